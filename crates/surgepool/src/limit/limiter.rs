//! The live limiter: an atomic in-flight count checked against an atomic limit, and an
//! algorithm (behind a mutex, touched once per finished job) that moves the limit.

use std::fmt;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Algorithm, Limit, Sample};
use crate::error::BuildError;
use crate::sync::{lock, Arc, AtomicU64, AtomicUsize, Mutex, Ordering, Padded};

/// Shares one limit between any number of callers. Clones share the same state.
///
/// See the [module documentation](crate::limit) for an example.
#[derive(Clone)]
pub struct Limiter {
    shared: Arc<Shared>,
}

struct Shared {
    limit: AtomicUsize,
    in_flight: AtomicUsize,
    /// Tasks parked in `acquire`; release only pays for a notify when there are some.
    waiters: AtomicUsize,
    notify: Notify,
    algorithm: Option<Mutex<Box<dyn Algorithm>>>,
    /// Written once per release: kept off the line of `limit` and `in_flight`, which every
    /// admission reads (profiled: the shared line cost 6% of a pool's submit-and-run).
    counters: Padded<Counters>,
}

#[derive(Default)]
struct Counters {
    succeeded: AtomicU64,
    dropped: AtomicU64,
    ignored: AtomicU64,
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

/// Counters of a [`Limiter`], read at one instant.
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
}

impl Limiter {
    /// Builds a limiter, checking the limit's settings.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] when the limit's settings cannot work (for example `Limit::fixed(0)`).
    pub fn new(limit: Limit) -> Result<Limiter, BuildError> {
        limit.validate()?;
        Ok(Limiter {
            shared: Arc::new(Shared {
                limit: AtomicUsize::new(limit.initial().max(1)),
                in_flight: AtomicUsize::new(0),
                waiters: AtomicUsize::new(0),
                notify: Notify::new(),
                algorithm: limit.algorithm().map(Mutex::new),
                counters: Padded(Counters::default()),
            }),
        })
    }

    /// Takes a permit if in-flight work is under the limit. Never waits.
    pub fn try_acquire(&self) -> Option<Permit> {
        if self.try_acquire_raw() {
            Some(Permit::new(self.shared.clone(), self.is_adaptive()))
        } else {
            None
        }
    }

    /// Waits for a permit.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future before it completes takes no permit. Waiters are
    /// woken in FIFO order, but a concurrent `try_acquire` may take a freed permit first.
    pub async fn acquire(&self) -> Permit {
        if let Some(permit) = self.try_acquire() {
            return permit;
        }
        let _waiting = WaiterGuard::new(&self.shared);
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(permit) = self.try_acquire() {
                return permit;
            }
            notified.await;
        }
    }

    /// Waits at most `wait` for a permit; `None` when none came in time.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`acquire`](Self::acquire).
    pub async fn acquire_timeout(&self, wait: Duration) -> Option<Permit> {
        tokio::time::timeout(wait, self.acquire()).await.ok()
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.shared.limit.load(Ordering::Acquire)
    }

    /// Permits held now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    /// The limiter's counters.
    pub fn stats(&self) -> LimiterStats {
        LimiterStats {
            limit: self.limit(),
            in_flight: self.in_flight(),
            succeeded: self.shared.counters.succeeded.load(Ordering::Relaxed),
            dropped: self.shared.counters.dropped.load(Ordering::Relaxed),
            ignored: self.shared.counters.ignored.load(Ordering::Relaxed),
        }
    }

    /// Sets the limit by hand (values below 1 become 1). Permits already held stay valid;
    /// if the limit shrank, admission stops until in-flight work drains below it. An
    /// adaptive algorithm moves on from its own state at its next sample.
    pub fn set_limit(&self, limit: usize) {
        self.shared.store_limit(limit.max(1));
    }

    /// `true` when the limit moves with samples, so callers should measure latency.
    pub(crate) fn is_adaptive(&self) -> bool {
        self.shared.algorithm.is_some()
    }

    /// Admission without a `Permit` object, for the pools (which hold the slot themselves).
    pub(crate) fn try_acquire_raw(&self) -> bool {
        let shared = &*self.shared;
        // SeqCst (free on x86): a parked `acquire` increments `waiters` and then checks here,
        // while `release` decrements `in_flight` and then checks `waiters`; with both sides
        // sequentially consistent, at least one of them sees the other (no lost wake-up).
        let mut current = shared.in_flight.load(Ordering::SeqCst);
        loop {
            if current >= shared.limit.load(Ordering::SeqCst) {
                return false;
            }
            match shared.in_flight.compare_exchange_weak(
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
    pub(crate) fn keep_raw(&self) -> bool {
        let shared = &*self.shared;
        // SeqCst as in `try_acquire_raw`: the slot stays taken, so nobody waits on it.
        if shared.in_flight.load(Ordering::SeqCst) <= shared.limit.load(Ordering::SeqCst) {
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
    fn release(&self, outcome: Outcome, now: Option<Instant>) {
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
            };
            let new_limit = lock(algorithm).update(&sample).max(1);
            return self.store_limit(new_limit);
        }
        false
    }

    /// Gives one slot back and wakes a waiter if there is one.
    fn free_slot(&self) {
        // SeqCst pairs with the waiter's increment of `waiters` and its SeqCst re-check of
        // `in_flight` (see `try_acquire_raw`).
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.notify.notify_one();
        }
    }

    /// Sets the limit; `true` if it grew.
    fn store_limit(&self, new_limit: usize) -> bool {
        let old = self.limit.swap(new_limit, Ordering::SeqCst);
        if new_limit > old && self.waiters.load(Ordering::SeqCst) > 0 {
            for _ in 0..(new_limit - old).min(self.waiters.load(Ordering::SeqCst)) {
                self.notify.notify_one();
            }
        }
        new_limit > old
    }
}

/// Counts a task parked in `acquire` for as long as it waits (also when it is cancelled).
struct WaiterGuard<'a>(&'a Shared);

impl<'a> WaiterGuard<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.waiters.fetch_add(1, Ordering::SeqCst);
        WaiterGuard(shared)
    }
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::SeqCst);
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

/// The right to run one job under a [`Limiter`]. Report how the job went when it ends:
/// [`success`](Permit::success), [`dropped`](Permit::dropped) or [`ignore`](Permit::ignore).
/// A permit that is simply dropped (an error path, a panic, a cancelled future) counts as
/// dropped, so an adaptive limit backs off rather than learning from a lost job.
#[must_use = "a permit releases its slot when dropped, and then counts as dropped"]
pub struct Permit {
    shared: Arc<Shared>,
    /// When the permit was taken; only an adaptive limit needs it, so a fixed limit skips
    /// the clock reads and admission stays as cheap as a semaphore's.
    start: Option<Instant>,
    released: bool,
}

impl Permit {
    fn new(shared: Arc<Shared>, timed: bool) -> Permit {
        let start = timed.then(Instant::now);
        Permit {
            shared,
            start,
            released: false,
        }
    }

    /// The job succeeded; its latency is the time since the permit was taken.
    pub fn success(self) {
        let (rtt, now) = self.elapsed();
        self.release(Outcome::Success(rtt), now);
    }

    /// The job succeeded and took `latency` (when the caller measured it better).
    pub fn success_with_latency(self, latency: Duration) {
        self.release(Outcome::Success(latency), None);
    }

    /// The job failed in a way that signals overload (timeout, 503, rejected downstream).
    pub fn dropped(self) {
        let (rtt, now) = self.elapsed();
        self.release(Outcome::Dropped(rtt), now);
    }

    /// The job's outcome says nothing about capacity (e.g. a 4xx); release without a sample.
    pub fn ignore(self) {
        self.release(Outcome::Ignored, None);
    }

    /// When the permit was taken, if the limit is adaptive (a fixed limit reads no clock).
    pub fn acquired_at(&self) -> Option<Instant> {
        self.start
    }

    /// Time held so far, and the instant it was read (reused as the sample's time).
    fn elapsed(&self) -> (Duration, Option<Instant>) {
        match self.start {
            Some(start) => {
                let now = Instant::now();
                (now.saturating_duration_since(start), Some(now))
            }
            None => (Duration::ZERO, None),
        }
    }

    fn release(mut self, outcome: Outcome, now: Option<Instant>) {
        self.released = true;
        self.shared.release(outcome, now);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.released {
            let (rtt, now) = self.elapsed();
            self.shared.release(Outcome::Dropped(rtt), now);
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("acquired_at", &self.start)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

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
