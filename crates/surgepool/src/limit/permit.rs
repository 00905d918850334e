//! The permit a `Limiter` hands out: releasing it reports the job's outcome.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use super::limiter::Shared;
use super::Outcome;
use crate::sync::Arc;

/// The right to run one job under a [`Limiter`](super::Limiter). Report how the job went when it ends:
/// [`success`](Permit::success), [`dropped`](Permit::dropped) or [`ignore`](Permit::ignore).
/// A permit that is simply dropped (an error path, a panic, a cancelled future) counts as
/// dropped, so an adaptive limit backs off rather than learning from a lost job.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use surgepool::limit::{Limit, Limiter};
///
/// let limiter = Limiter::new(Limit::adaptive())?;
/// let permit = limiter.try_acquire().expect("under the limit");
/// assert!(permit.acquired_at().is_some()); // an adaptive limit times its permits
/// permit.success_with_latency(Duration::from_millis(3)); // measured by the caller
///
/// limiter.try_acquire().unwrap().success(); // latency: time since it was taken
/// limiter.try_acquire().unwrap().dropped(); // overload: a timeout, a 503
/// limiter.try_acquire().unwrap().ignore(); // says nothing about capacity: a 404
/// drop(limiter.try_acquire().unwrap()); // an error path: counts as dropped
///
/// let stats = limiter.stats();
/// assert_eq!((stats.succeeded, stats.dropped, stats.ignored), (2, 2, 1));
/// assert!(Limiter::new(Limit::fixed(1))?.try_acquire().unwrap().acquired_at().is_none());
/// # Ok::<(), surgepool::BuildError>(())
/// ```
#[must_use = "a permit releases its slot when dropped, and then counts as dropped"]
pub struct Permit {
    shared: Arc<Shared>,
    /// When the permit was taken; only an adaptive limit needs it, so a fixed limit skips
    /// the clock reads and admission stays as cheap as a semaphore's.
    start: Option<Instant>,
    released: bool,
}

impl Permit {
    pub(super) fn new(shared: Arc<Shared>) -> Permit {
        let start = shared.algorithm.is_some().then(Instant::now);
        Permit {
            shared,
            start,
            released: false,
        }
    }

    /// The job succeeded; its latency is the time since the permit was taken.
    ///
    /// See the [example on `Permit`](Permit#examples).
    pub fn success(self) {
        let (rtt, now) = self.elapsed();
        self.release(Outcome::Success(rtt), now);
    }

    /// The job succeeded and took `latency` (when the caller measured it better).
    ///
    /// See the [example on `Permit`](Permit#examples).
    pub fn success_with_latency(self, latency: Duration) {
        self.release(Outcome::Success(latency), None);
    }

    /// The job failed in a way that signals overload (timeout, 503, rejected downstream).
    ///
    /// See the [example on `Permit`](Permit#examples).
    pub fn dropped(self) {
        let (rtt, now) = self.elapsed();
        self.release(Outcome::Dropped(rtt), now);
    }

    /// The job's outcome says nothing about capacity (e.g. a 4xx); release without a sample.
    ///
    /// See the [example on `Permit`](Permit#examples).
    pub fn ignore(self) {
        self.release(Outcome::Ignored, None);
    }

    /// When the permit was taken, if the limit is adaptive (a fixed limit reads no clock).
    ///
    /// See the [example on `Permit`](Permit#examples).
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
