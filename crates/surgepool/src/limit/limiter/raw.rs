//! The pools' path: admission and release without a `Permit` object (a pool holds the slot
//! itself), with the slot's release and the outcome's sample split so that a pool can settle
//! the slot under its lock and feed the algorithm after it.

use tokio::time::Instant;

use super::{Limiter, Outcome};
use crate::sync::Ordering;

impl Limiter {
    /// Admission without a `Permit` object, for the pools (which hold the slot themselves).
    /// Refuses while tasks wait in `acquire`: they come first.
    pub(crate) fn try_acquire_raw(&self) -> bool {
        self.shared.try_acquire_raw()
    }

    /// Releases a slot taken with [`try_acquire_raw`](Self::try_acquire_raw); `now` is the
    /// caller's clock reading.
    pub(crate) fn release_raw(&self, outcome: Outcome, now: Instant) {
        self.shared.release(outcome, Some(now));
    }

    /// For a pool whose job just finished (its outcome reported separately, with
    /// [`sample_raw`](Self::sample_raw)): keeps the job's slot for the caller's next job if it
    /// is still within the limit (`true`), else gives it back (`false`). Same as a release
    /// then `try_acquire_raw`, minus two atomic read-modify-writes on a contended line, and
    /// no other caller can take the slot in between.
    /// (Tasks parked in `acquire` come first: with any, the slot goes to them instead.)
    pub(crate) fn keep_raw(&self) -> bool {
        let shared = &*self.shared;
        // SeqCst as in `try_acquire_raw`: the slot stays taken, so nobody waits on it.
        if shared.waiters.load(Ordering::SeqCst) == 0
            && shared.in_flight.load(Ordering::SeqCst) <= shared.limit.load(Ordering::SeqCst)
        {
            return true;
        }
        shared.free_slot();
        false
    }

    /// A pool's job finished, under the pool's lock: keeps its slot for the next queued job
    /// when `queued` (and the limit allows, as [`keep_raw`](Self::keep_raw)), else gives it
    /// back. Returns whether the slot was kept, and the in-flight count the job saw (itself
    /// included), for [`sample_raw`](Self::sample_raw) once the lock is released.
    pub(crate) fn end_job_raw(&self, queued: bool) -> (bool, usize) {
        let in_flight = self.in_flight();
        let kept = if queued {
            self.keep_raw()
        } else {
            self.free_raw();
            false
        };
        (kept, in_flight)
    }

    /// Gives back a slot whose outcome is reported separately, with
    /// [`sample_raw`](Self::sample_raw).
    pub(crate) fn free_raw(&self) {
        self.shared.free_slot();
    }

    /// Reports a finished job's outcome; `in_flight` is the count it saw (itself included),
    /// read when it finished. Split from the slot's release so that a pool can release or
    /// keep the slot under its lock and feed the algorithm after it. `true` if the limit
    /// grew.
    pub(crate) fn sample_raw(&self, outcome: Outcome, now: Instant, in_flight: usize) -> bool {
        self.shared.sample_with(outcome, Some(now), in_flight)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use crate::limit::{Limit, Limiter, Outcome};

    #[test]
    fn a_kept_slot_is_kept_only_within_the_limit() {
        let limiter = Limiter::new(Limit::fixed(2)).unwrap();
        assert!(limiter.try_acquire_raw());
        assert!(limiter.try_acquire_raw());
        limiter.set_limit(1);
        // Two held, limit 1: the finishing job's slot must go back, not on.
        assert!(!limiter.keep_raw());
        assert_eq!(limiter.in_flight(), 1);
        // One held, limit 1: it may go on to the next job, and stays taken.
        assert!(limiter.keep_raw());
        assert_eq!(limiter.in_flight(), 1);
        assert!(!limiter.try_acquire_raw(), "the kept slot is still held");
        limiter.free_raw();
        assert_eq!(limiter.in_flight(), 0);
        // Outcomes are counted by `sample_raw`, apart from the slots.
        let success = Outcome::Success(Duration::from_millis(1));
        assert!(
            !limiter.sample_raw(success, Instant::now(), 1),
            "a fixed limit never grows"
        );
        let stats = limiter.stats();
        assert_eq!((stats.succeeded, stats.dropped, stats.ignored), (1, 0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn sample_raw_says_when_an_adaptive_limit_grew() {
        let limiter = Limiter::new(Limit::aimd()).unwrap();
        let success = Outcome::Success(Duration::from_millis(1));
        let mut grew = false;
        for _ in 0..1_000 {
            // As if the limit were in full use, which AIMD needs before it grows.
            let (before, in_flight) = (limiter.limit(), limiter.limit());
            let g = limiter.sample_raw(success, Instant::now(), in_flight);
            assert_eq!(g, limiter.limit() > before);
            grew |= g;
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert!(
            grew,
            "AIMD grows on successes at a full limit: {:?}",
            limiter.stats()
        );
    }
}
