//! [`PoolBuilder`]: the pool's settings, validated by `build`.

use std::fmt;
use std::sync::Arc as StdArc;
use std::time::Duration;

use tokio::runtime::Handle;

use super::inner::{Inner, Settings};
use super::{Owner, PanicHook, Pool};
use crate::clock::Clock;
use crate::error::{BuildError, TaskError};
use crate::limit::{Limit, Limiter};
use crate::queue::{Codel, JobQueue};
use crate::sync::Arc;

/// The default queue capacity.
pub(crate) const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// The default time an idle worker above the minimum lives.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// CoDel's defaults (RFC 8289): 5 ms target over 100 ms intervals.
pub(crate) const CODEL_TARGET: Duration = Duration::from_millis(5);
pub(crate) const CODEL_INTERVAL: Duration = Duration::from_millis(100);

/// Builds a [`Pool`]. Every setting is checked by [`build`](PoolBuilder::build), which
/// returns a [`BuildError`] naming the wrong one; no setter panics.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use surgepool::{Limit, Pool};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), surgepool::BuildError> {
/// let pool = Pool::builder()
///     .limit(Limit::fixed(64))          // default: Limit::adaptive()
///     .queue_capacity(1024)             // 0 = no queue: admit only under the limit
///     .min_workers(4)
///     .idle_timeout(Duration::from_secs(10))
///     .queue_timeout(Duration::from_millis(100)) // shed what waited too long
///     .build()?;
/// # drop(pool);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PoolBuilder {
    limit: Limit,
    queue_capacity: usize,
    min_workers: usize,
    idle_timeout: Duration,
    queue_timeout: Option<Duration>,
    codel: Option<(Duration, Duration)>,
    memory_budget: Option<u64>,
    on_panic: Option<PanicHook>,
    runtime: Option<Handle>,
    name: Option<StdArc<str>>,
}

/// The name of a pool built without [`PoolBuilder::name`].
const DEFAULT_NAME: &str = "pool";

impl PoolBuilder {
    pub(crate) fn new() -> PoolBuilder {
        PoolBuilder {
            limit: Limit::adaptive(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            min_workers: 0,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            queue_timeout: None,
            codel: None,
            memory_budget: None,
            on_panic: None,
            runtime: None,
            name: None,
        }
    }

    /// A name for this pool: the `pool` label of its metrics (feature `metrics`) and the
    /// `pool` field of its `tracing` events. Default: `"pool"`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), surgepool::BuildError> {
    /// let pool = surgepool::Pool::builder().name("checkout").build()?;
    /// assert_eq!(pool.name(), "checkout");
    /// # Ok(())
    /// # }
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(StdArc::from(name.into()));
        self
    }

    /// How many tasks may run at once. Default: [`Limit::adaptive()`].
    ///
    /// See the [example on `PoolBuilder`](PoolBuilder#examples).
    pub fn limit(mut self, limit: Limit) -> Self {
        self.limit = limit;
        self
    }

    /// How many tasks may wait for a slot. `0`: no queue, admit only while under the
    /// limit. Default: 1024. The queue's memory grows with use, not with its capacity.
    ///
    /// See the [example on `PoolBuilder`](PoolBuilder#examples).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Workers kept alive even when idle (started at `build`). Default: 0. Must not be
    /// above a fixed limit, nor above 65,536 for any limit.
    ///
    /// See the [example on `PoolBuilder`](PoolBuilder#examples).
    pub fn min_workers(mut self, n: usize) -> Self {
        self.min_workers = n;
        self
    }

    /// How long an idle worker above `min_workers` lives. Default: 10 s.
    ///
    /// See the [example on `PoolBuilder`](PoolBuilder#examples).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sheds a task that waited in the queue longer than `timeout`, just before it would
    /// run: it never runs and its handle reports [`TaskError::is_shed`]. Default: none.
    ///
    /// ```
    /// use std::time::Duration;
    /// use surgepool::{Limit, Pool};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Pool::builder()
    ///     .limit(Limit::fixed(1))
    ///     .queue_timeout(Duration::from_millis(10))
    ///     .build()?;
    /// let slow = pool.try_submit(tokio::time::sleep(Duration::from_millis(50)))?;
    /// let late = pool.try_submit(async { "never runs" })?; // queued behind `slow`
    /// slow.await?;
    /// assert!(late.await.unwrap_err().is_shed()); // it waited 50 ms > 10 ms
    /// # Ok(())
    /// # }
    /// ```
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.queue_timeout = Some(timeout);
        self
    }

    /// Turns on CoDel queue management (RFC 8289) with its standard 5 ms target and
    /// 100 ms interval: while the queue delay stays above target for an interval, queued
    /// tasks are shed at a rising rate until it falls back. Bursts that drain within an
    /// interval are never shed.
    ///
    /// See the [example on `PoolBuilder`](PoolBuilder#examples).
    pub fn codel(self) -> Self {
        self.codel_with(CODEL_TARGET, CODEL_INTERVAL)
    }

    /// CoDel with your own target delay and interval.
    ///
    /// See the [example on `PoolBuilder`](PoolBuilder#examples).
    pub fn codel_with(mut self, target: Duration, interval: Duration) -> Self {
        self.codel = Some((target, interval));
        self
    }

    /// Admission stops while the bytes declared by
    /// [`try_submit_weighted`](Pool::try_submit_weighted) in flight (queued or running)
    /// would pass `bytes`.
    ///
    /// See the example on [`Pool::try_submit_weighted`](Pool::try_submit_weighted).
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = Some(bytes);
        self
    }

    /// Calls `hook` with each task's panic (after it was caught; the pool lives on). A
    /// panic inside the hook is caught too.
    ///
    /// See the [example on `PoolBuilder`](PoolBuilder#examples).
    pub fn on_panic<H>(mut self, hook: H) -> Self
    where
        H: Fn(&TaskError) + Send + Sync + 'static,
    {
        self.on_panic = Some(StdArc::new(hook));
        self
    }

    /// Runs the workers on this runtime instead of the ambient one, so the pool can be
    /// built outside a runtime.
    ///
    /// See the [example on `PoolBuilder`](PoolBuilder#examples).
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Builds the pool and starts `min_workers` workers.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] when a setting cannot work: a fixed limit of 0, `min_workers`
    /// above the limit, a zero CoDel target or interval, a zero memory budget, no tokio
    /// runtime (build inside one, or pass [`runtime`](Self::runtime)), or a runtime built
    /// without timers (`enable_time()`).
    ///
    /// See the [example on `PoolBuilder`](PoolBuilder#examples).
    pub fn build(self) -> Result<Pool, BuildError> {
        validate_limit(&self.limit, self.min_workers)?;
        if let Some((target, interval)) = self.codel {
            if target.is_zero() || interval.is_zero() {
                return Err(BuildError::new(
                    "codel",
                    "the target delay and the interval must both be above zero",
                ));
            }
        }
        if self.memory_budget == Some(0) {
            return Err(BuildError::new(
                "memory_budget",
                "a budget of 0 bytes would admit only weightless tasks; leave it unset instead",
            ));
        }
        let runtime = match self.runtime {
            Some(handle) => handle,
            None => Handle::try_current().map_err(|_| {
                BuildError::new(
                    "runtime",
                    "no tokio runtime here: build the pool inside a runtime, or pass one with \
                     `PoolBuilder::runtime`",
                )
            })?,
        };
        if !timers_enabled(&runtime) {
            return Err(BuildError::new(
                "runtime",
                "the tokio runtime has no timers: build it with `enable_time()` (or \
                 `enable_all()`); idle workers, deadlines and shutdown graces need them",
            ));
        }
        let limiter = Limiter::new(self.limit)?;
        let codel = self.codel.map(|(t, i)| Codel::new(t, i));
        let clock = Clock::new();
        let queue = JobQueue::new(self.queue_capacity, self.queue_timeout, codel, clock);
        let name = self.name.unwrap_or_else(|| StdArc::from(DEFAULT_NAME));
        let settings = Settings {
            clock,
            min_workers: self.min_workers,
            idle_timeout: self.idle_timeout,
            memory_budget: self.memory_budget,
            on_panic: crate::trace::with_panic_event(self.on_panic, &name),
            name: name.clone(),
        };
        let inner = Inner::new(limiter, runtime, settings, queue);
        Ok(Pool {
            owner: Arc::new(Owner { inner, name }),
        })
    }
}

/// `true` if `runtime` has tokio's time driver. Without it, creating a timer panics; the
/// pool's idle workers make one, so such a runtime is refused at build time rather than
/// found out by a worker. Tokio has no way to ask, so a timer is made (and dropped unused,
/// which registers nothing) with the panic caught; a refused runtime prints tokio's panic
/// message once, through the panic hook.
fn timers_enabled(runtime: &Handle) -> bool {
    let _entered = runtime.enter();
    std::panic::catch_unwind(|| drop(tokio::time::sleep(Duration::ZERO))).is_ok()
}

/// The most workers `min_workers` may keep: each is a parked task or thread, started at
/// `build`; a larger number is a mistake (and `usize::MAX` would overflow an allocation).
pub(crate) const MAX_MIN_WORKERS: usize = 65_536;

/// Checks a limit and a minimum of workers together (both pools' builders).
pub(crate) fn validate_limit(limit: &Limit, min_workers: usize) -> Result<(), BuildError> {
    limit.validate()?;
    if limit.is_fixed() && min_workers > limit.initial() {
        return Err(BuildError::new(
            "min_workers",
            format!(
                "{min_workers} is above the fixed limit of {}: the extra workers could never run a task",
                limit.initial()
            ),
        ));
    }
    if min_workers > MAX_MIN_WORKERS {
        return Err(BuildError::new(
            "min_workers",
            format!("{min_workers} is above the most a pool keeps idle ({MAX_MIN_WORKERS})"),
        ));
    }
    Ok(())
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder::new()
    }
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("name", &self.name)
            .field("limit", &self.limit)
            .field("queue_capacity", &self.queue_capacity)
            .field("min_workers", &self.min_workers)
            .field("idle_timeout", &self.idle_timeout)
            .field("queue_timeout", &self.queue_timeout)
            .field("codel", &self.codel)
            .field("memory_budget", &self.memory_budget)
            .field("on_panic", &self.on_panic.is_some())
            .finish_non_exhaustive()
    }
}
