//! The live limiter: an atomic in-flight count checked against an atomic limit, and an
//! algorithm (behind a mutex, touched once per finished job) that moves the limit. Tasks
//! that wait for a slot park in the FIFO queue of `waiters.rs`.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use tokio::time::Instant;

use super::permit::Permit;
use super::waiters::{Acquire, WaitQueue};
use super::{Algorithm, Limit, Sample};
use crate::error::BuildError;
use crate::sync::{lock, Arc, AtomicU64, AtomicUsize, Mutex, Ordering, Padded};

/// Shares one limit between any number of callers. Clones share the same state.
///
/// See also the [module documentation](crate::limit), and [`Permit`] for how to report
/// each job's outcome.
///
/// # Examples
///
/// ```
/// use surgepool::limit::{Limit, Limiter};
///
/// let limiter = Limiter::new(Limit::fixed(2))?;
/// let permit = limiter.try_acquire().expect("under the limit");
/// assert_eq!((limiter.limit(), limiter.in_flight()), (2, 1));
///
/// limiter.set_limit(1); // by hand: the held permit stays valid, admission stops
/// assert!(limiter.try_acquire().is_none());
/// permit.success();
///
/// let stats = limiter.stats();
/// assert_eq!((stats.limit, stats.in_flight, stats.succeeded), (1, 0, 1));
/// # Ok::<(), surgepool::BuildError>(())
/// ```
#[derive(Clone)]
pub struct Limiter {
    shared: Arc<Shared>,
}

pub(super) struct Shared {
    pub(super) limit: AtomicUsize,
    pub(super) in_flight: AtomicUsize,
    /// Tasks parked in `acquire` (the queue's length, readable without its lock): release
    /// only takes the queue's lock when there are some, and `try_acquire` refuses then.
    pub(super) waiters: AtomicUsize,
    pub(super) queue: Mutex<WaitQueue>,
    pub(super) algorithm: Option<Mutex<Box<dyn Algorithm>>>,
    /// Written once per release: kept off the line of `limit` and `in_flight`, which every
    /// admission reads (profiled: the shared line cost 6% of a pool's submit-and-run).
    counters: Padded<Counters>,
}

#[derive(Default)]
struct Counters {
    succeeded: AtomicU64,
    dropped: AtomicU64,
    ignored: AtomicU64,
    algorithm_panics: AtomicU64,
    /// Admissions refused (`try_acquire` and the pools' `try_acquire_raw`): demand the
    /// limit turned away, which an adaptive algorithm weighs.
    refused: AtomicU64,
}

/// How a permit's job ended, as reported to the limiter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    /// It finished normally after holding its permit this long.
    Success(Duration),
    /// It failed in a way that signals overload.
    Dropped(Duration),
    /// It says nothing about the downstream's capacity (e.g. a client error).
    Ignored,
}

/// A sequentially consistent read of one side of the "raise mine, then read theirs"
/// pairs above (waiters / in-flight). Loom models `SeqCst` as acquire-release, under which
/// two plain loads could both read stale values and report a lost wake-up that real
/// hardware cannot produce; a read-modify-write always reads the latest value, so under
/// loom the reads are `fetch_add(0)` (the model then checks the same protocol, soundly).
#[inline]
fn seq_cst_read(atomic: &AtomicUsize) -> usize {
    #[cfg(loom)]
    return atomic.fetch_add(0, Ordering::SeqCst);
    #[cfg(not(loom))]
    atomic.load(Ordering::SeqCst)
}

/// Counters of a [`Limiter`], read at one instant by [`Limiter::stats`] (see the
/// [example on `Limiter`](Limiter#examples)) or a pool's `limiter_stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimiterStats {
    /// The current limit.
    pub limit: usize,
    /// Permits held now.
    pub in_flight: usize,
    /// Permits released with [`Permit::success`].
    pub succeeded: u64,
    /// Permits released with [`Permit::dropped`], or simply dropped.
    pub dropped: u64,
    /// Permits released with [`Permit::ignore`].
    pub ignored: u64,
    /// Tasks waiting in [`Limiter::acquire`] now.
    pub waiters: usize,
    /// Samples on which the limit's algorithm panicked (the limit then stayed as it was;
    /// a bug in the algorithm, never a reason to lose a slot).
    pub algorithm_panics: u64,
}

impl Limiter {
    /// Builds a limiter, checking the limit's settings.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] when the limit's settings cannot work (for example `Limit::fixed(0)`).
    pub fn new(limit: Limit) -> Result<Limiter, BuildError> {
        limit.validate()?;
        Ok(Limiter::with_algorithm(limit.initial(), limit.algorithm()))
    }

    /// A limiter starting at `initial`, moved by `algorithm` if there is one.
    fn with_algorithm(initial: usize, algorithm: Option<Box<dyn Algorithm>>) -> Limiter {
        Limiter {
            shared: Arc::new(Shared {
                limit: AtomicUsize::new(initial.max(1)),
                in_flight: AtomicUsize::new(0),
                waiters: AtomicUsize::new(0),
                queue: Mutex::new(WaitQueue::default()),
                algorithm: algorithm.map(Mutex::new),
                counters: Padded(Counters::default()),
            }),
        }
    }

    /// Takes a permit if in-flight work is under the limit and nobody waits in
    /// [`acquire`](Self::acquire). Never waits.
    ///
    /// # Examples
    ///
    /// ```
    /// use surgepool::limit::{Limit, Limiter};
    ///
    /// let limiter = Limiter::new(Limit::fixed(1)).unwrap();
    /// let permit = limiter.try_acquire().expect("under the limit");
    /// assert!(limiter.try_acquire().is_none(), "at the limit");
    /// permit.success();
    /// ```
    pub fn try_acquire(&self) -> Option<Permit> {
        if self.try_acquire_raw() {
            Some(Permit::new(self.shared.clone()))
        } else {
            None
        }
    }

    /// Waits for a permit.
    ///
    /// Waiters are served first come, first served: while anyone waits, `try_acquire`
    /// refuses, and a permit released while someone waits passes straight to the one that
    /// has waited longest.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future before it completes takes no permit. A waiter
    /// dropped just after a permit was handed to it passes the permit on to the next waiter
    /// (or frees it), so no slot is lost.
    ///
    /// # Examples
    ///
    /// ```
    /// use surgepool::limit::{Limit, Limiter};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let limiter = Limiter::new(Limit::fixed(1)).unwrap();
    /// let held = limiter.try_acquire().unwrap();
    /// let waiter = tokio::spawn({
    ///     let limiter = limiter.clone();
    ///     async move { limiter.acquire().await.success() }
    /// });
    /// tokio::task::yield_now().await; // the waiter parks
    /// assert!(limiter.try_acquire().is_none(), "no barging past a waiter");
    /// held.success(); // handed to the waiter
    /// waiter.await.unwrap();
    /// assert_eq!(limiter.in_flight(), 0);
    /// # }
    /// ```
    pub async fn acquire(&self) -> Permit {
        Acquire::new(self.shared.clone()).await
    }

    /// Waits at most `wait` for a permit; `None` when none came in time. A `wait` too
    /// large for the clock (`Duration::MAX`) waits without a deadline.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`acquire`](Self::acquire).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use surgepool::limit::{Limit, Limiter};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = Limiter::new(Limit::fixed(1)).unwrap();
    /// let _held = limiter.try_acquire().unwrap();
    /// assert!(limiter.acquire_timeout(Duration::from_millis(10)).await.is_none());
    /// # }
    /// ```
    pub async fn acquire_timeout(&self, wait: Duration) -> Option<Permit> {
        match Instant::now().checked_add(wait) {
            Some(deadline) => tokio::time::timeout_at(deadline, self.acquire()).await.ok(),
            None => Some(self.acquire().await),
        }
    }

    /// The current limit.
    ///
    /// See the [example on `Limiter`](Limiter#examples).
    pub fn limit(&self) -> usize {
        self.shared.limit.load(Ordering::Acquire)
    }

    /// Permits held now.
    ///
    /// See the [example on `Limiter`](Limiter#examples).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    /// The limiter's counters.
    ///
    /// See the [example on `Limiter`](Limiter#examples).
    pub fn stats(&self) -> LimiterStats {
        LimiterStats {
            limit: self.limit(),
            in_flight: self.in_flight(),
            succeeded: self.shared.counters.succeeded.load(Ordering::Relaxed),
            dropped: self.shared.counters.dropped.load(Ordering::Relaxed),
            ignored: self.shared.counters.ignored.load(Ordering::Relaxed),
            waiters: self.shared.waiters.load(Ordering::Relaxed),
            algorithm_panics: self
                .shared
                .counters
                .algorithm_panics
                .load(Ordering::Relaxed),
        }
    }

    /// Sets the limit by hand (values below 1 become 1). Permits already held stay valid;
    /// if the limit shrank, admission stops until in-flight work drains below it. An
    /// adaptive algorithm moves on from its own state at its next sample.
    ///
    /// See the [example on `Limiter`](Limiter#examples).
    pub fn set_limit(&self, limit: usize) {
        self.shared.store_limit(limit.max(1));
    }

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

impl Shared {
    /// Releases one slot; `now` is the caller's clock reading if it has one.
    pub(super) fn release(&self, outcome: Outcome, now: Option<Instant>) {
        // Sample before releasing: in-flight as the job saw it, itself included.
        self.sample(outcome, now);
        self.free_slot();
    }

    /// Counts `outcome` and feeds it to the algorithm, which may move the limit.
    fn sample(&self, outcome: Outcome, now: Option<Instant>) {
        self.sample_with(outcome, now, self.in_flight.load(Ordering::Acquire));
    }

    /// As `sample`, with the in-flight count the job saw; `true` if the limit grew.
    fn sample_with(&self, outcome: Outcome, now: Option<Instant>, in_flight: usize) -> bool {
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

    /// Takes a slot if in-flight work is under the limit (one CAS), ignoring waiters.
    pub(super) fn take_slot(&self) -> bool {
        // SeqCst (free on x86): a parking `acquire` raises `waiters` and then looks at
        // `in_flight` here, while `free_slot` lowers `in_flight` and then looks at `waiters`;
        // with both sides sequentially consistent, at least one of them sees the other (no
        // lost wake-up).
        let mut current = seq_cst_read(&self.in_flight);
        loop {
            if current >= self.limit.load(Ordering::SeqCst) {
                return false;
            }
            match self.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Admission for callers that do not wait: refused while tasks wait in `acquire`, so a
    /// slot freed for a waiter cannot be taken in front of it (no barging).
    pub(super) fn try_acquire_raw(&self) -> bool {
        if self.waiters.load(Ordering::SeqCst) == 0 && self.take_slot() {
            return true;
        }
        self.counters.refused.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Gives one slot back: straight to the oldest waiter if there is one, else to the count.
    pub(super) fn free_slot(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 && self.hand_off() {
            return;
        }
        // SeqCst pairs with the waiter's raise of `waiters` (see `take_slot`): a waiter that
        // parked after the look above is seen here and served by the dispatch.
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if seq_cst_read(&self.waiters) > 0 {
            self.dispatch();
        }
    }

    /// Sets the limit; `true` if it grew. Room a grown limit makes goes to waiters first.
    fn store_limit(&self, new_limit: usize) -> bool {
        let old = self.limit.swap(new_limit, Ordering::SeqCst);
        if new_limit != old {
            crate::trace::event!(debug, from = old, to = new_limit, "limit changed");
        }
        if new_limit > old && self.waiters.load(Ordering::SeqCst) > 0 {
            self.dispatch();
        }
        new_limit > old
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

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
