//! The live limiter: an atomic in-flight count checked against an atomic limit, and an
//! algorithm (behind a mutex, touched once per finished job) that moves the limit. Tasks
//! that wait for a slot park in the FIFO queue of `limit/waiters.rs`.
//!
//! The public API is here; beside it: `slots.rs` (taking and giving back slots), `sample.rs`
//! (counting outcomes and moving the limit), `raw.rs` (the pools' permit-less path) and
//! `stats.rs` (the counters as read by callers).

mod raw;
mod sample;
mod slots;
mod stats;

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use super::permit::Permit;
use super::waiters::{Acquire, WaitQueue};
use super::{Algorithm, Limit};
use crate::error::BuildError;
use crate::sync::{Arc, AtomicU64, AtomicUsize, Mutex, Ordering, Padded};

pub use stats::LimiterStats;

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

    /// Sets the limit by hand (values below 1 become 1). Permits already held stay valid;
    /// if the limit shrank, admission stops until in-flight work drains below it. An
    /// adaptive algorithm moves on from its own state at its next sample.
    ///
    /// See the [example on `Limiter`](Limiter#examples).
    pub fn set_limit(&self, limit: usize) {
        self.shared.store_limit(limit.max(1));
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
