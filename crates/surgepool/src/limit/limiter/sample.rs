//! Each finished job's outcome: counted, then fed to the algorithm (if any), which may move
//! the limit; a panicking algorithm costs the sample, never the slot.

use std::panic::{self, AssertUnwindSafe};

use tokio::time::Instant;

use super::{Outcome, Shared};
use crate::limit::Sample;
use crate::sync::{lock, Ordering};

impl Shared {
    /// Counts `outcome` and feeds it to the algorithm, which may move the limit.
    pub(super) fn sample(&self, outcome: Outcome, now: Option<Instant>) {
        self.sample_with(outcome, now, self.in_flight.load(Ordering::Acquire));
    }

    /// As `sample`, with the in-flight count the job saw; `true` if the limit grew.
    pub(super) fn sample_with(
        &self,
        outcome: Outcome,
        now: Option<Instant>,
        in_flight: usize,
    ) -> bool {
        let (counter, sample) = match outcome {
            Outcome::Success(rtt) => (&self.counters.succeeded, Some((rtt, false))),
            Outcome::Dropped(rtt) => (&self.counters.dropped, Some((rtt, true))),
            Outcome::Ignored => (&self.counters.ignored, None),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let (Some(algorithm), Some((rtt, dropped))) = (&self.algorithm, sample) {
            let sample = Sample {
                now: now.unwrap_or_else(Instant::now),
                rtt,
                in_flight,
                dropped,
                refused: self.counters.refused.load(Ordering::Relaxed),
            };
            let update = {
                let mut algorithm = lock(algorithm);
                // An algorithm is ours, but a bug in one (an overflow, say) must cost at most
                // this sample: never the caller's slot, nor a permit counted twice. Caught
                // under the lock, so the mutex is not poisoned.
                panic::catch_unwind(AssertUnwindSafe(|| algorithm.update(&sample)))
            };
            return match update {
                Ok(new_limit) => self.store_limit(new_limit.max(1)),
                Err(payload) => {
                    self.counters
                        .algorithm_panics
                        .fetch_add(1, Ordering::Relaxed);
                    // Our payloads are strings, but a destructor must not unwind out of here.
                    let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
                    false
                }
            };
        }
        false
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use crate::limit::{Algorithm, Limiter, Outcome, Sample};

    /// An algorithm with a bug: it panics on every other sample.
    #[derive(Debug, Default)]
    struct Buggy(u64);

    impl Algorithm for Buggy {
        fn update(&mut self, _: &Sample) -> usize {
            self.0 += 1;
            assert!(self.0 % 2 == 0, "bug in the algorithm");
            5
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_algorithm_costs_the_sample_not_the_slot() {
        let limiter = Limiter::with_algorithm(2, Some(Box::new(Buggy::default())));
        // Permit path: `success` panicked out of the release before the slot was freed.
        let a = limiter.try_acquire().unwrap();
        let b = limiter.try_acquire().unwrap();
        a.success(); // panics inside: caught, limit unchanged
        assert_eq!((limiter.in_flight(), limiter.limit()), (1, 2));
        b.success(); // works: limit 5
        assert_eq!((limiter.in_flight(), limiter.limit()), (0, 5));
        // The pools' raw path.
        assert!(limiter.try_acquire_raw());
        let (kept, in_flight) = limiter.end_job_raw(false);
        assert!(!kept);
        let success = Outcome::Success(Duration::from_millis(1));
        assert!(!limiter.sample_raw(success, Instant::now(), in_flight));
        assert_eq!(limiter.in_flight(), 0);
        // A plain drop (the `Drop` impl: unwinding out of it would abort).
        drop(limiter.try_acquire().unwrap());
        let stats = limiter.stats();
        assert_eq!(stats.algorithm_panics, 2, "{stats:?}");
        assert_eq!((stats.succeeded, stats.dropped, stats.in_flight), (3, 1, 0));
        // The mutex is not poisoned: samples still reach the algorithm (its fifth call
        // panics again, and is caught again).
        limiter.try_acquire().unwrap().success();
        assert_eq!(limiter.stats().algorithm_panics, 3);
        assert_eq!(limiter.in_flight(), 0);
    }
}
