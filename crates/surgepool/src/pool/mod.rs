//! [`Pool`]: bounded, adaptive concurrency for futures on the ambient tokio runtime.

mod builder;
mod inner;
mod job;
mod shutdown;
mod spawn;
mod submit;
mod task;
mod worker;

use std::future::Future;
use std::sync::Arc as StdArc;
use std::time::Duration;

use tokio::time::Instant;

pub use builder::PoolBuilder;
pub(crate) use builder::{
    validate_limit, CODEL_INTERVAL, CODEL_TARGET, DEFAULT_IDLE_TIMEOUT, DEFAULT_QUEUE_CAPACITY,
};
pub use task::TaskHandle;

use crate::error::{SubmitError, TaskError};
use crate::stats::Snapshot;
use crate::sync::Arc;
use inner::{Inner, JobOptions, Refusal};
use job::Job;
use task::Task;

/// A hook that sees every task panic (after the pool caught it).
pub(crate) type PanicHook = StdArc<dyn Fn(&TaskError) + Send + Sync>;

/// A pool that runs futures with bounded concurrency and a bounded queue.
///
/// At most `limit` tasks run at once (the [`Limit`](crate::Limit), adaptive by default) and
/// at most `queue_capacity` wait. When both are full, [`try_submit`](Pool::try_submit)
/// hands the future back at once, so the caller can shed load (answer 503) instead of
/// letting work and memory pile up. Tasks run on workers — tokio tasks the pool starts on
/// demand and retires when idle — so the pool spawns nothing per task.
///
/// Clones share one pool. When the last clone is dropped, the pool closes: queued and
/// running tasks still finish, then the workers end. Nothing blocks and nothing leaks.
///
/// A panic in user code never reaches a worker: not in a task's poll (the task ends as
/// panicked, see [`TaskError::is_panic`]), nor in the destructor of a task's future, of its
/// output (when its handle was dropped), or of a panic payload. The worker goes on with the
/// next task, and the pool stays open.
///
/// The pool's workers live on the runtime it was built on, which needs timers
/// (`enable_time()`; `build()` refuses a runtime without): shut the pool down before that
/// runtime. If the runtime shuts down first, the pool closes, and every task it still held
/// (queued or running) ends as cancelled: its handle resolves to a cancelled
/// [`TaskError`], and it is counted in [`Snapshot::cancelled`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use surgepool::{Limit, Pool, SubmitError};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = Pool::builder()
///     .name("checkout")
///     .limit(Limit::fixed(64))
///     .queue_capacity(1024)
///     .build()?;
/// assert_eq!(pool.name(), "checkout");
/// assert_eq!(pool.limiter_stats().limit, 64);
///
/// // Shed at once when full ...
/// match pool.try_submit(async { 1 }) {
///     Ok(handle) => assert_eq!(handle.await?, 1),
///     Err(SubmitError::Full(_)) => { /* answer 503 */ }
///     Err(e) => return Err(e.into()),
/// }
/// // ... or wait a bounded time for room.
/// let handle = pool.submit_timeout(async { 2 }, Duration::from_millis(50)).await?;
/// assert_eq!(handle.await?, 2);
///
/// let report = pool.shutdown().await; // drains everything accepted
/// assert_eq!(report.cancelled, 0);
/// assert!(pool.is_closed()); // later submits get SubmitError::Closed
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Pool {
    owner: Arc<Owner>,
}

/// Closes the pool when the last `Pool` clone goes (handles and workers hold `Inner`, not
/// `Owner`, so they do not keep it open).
struct Owner {
    inner: Arc<Inner>,
    /// The pool's name (metrics label, tracing field).
    name: std::sync::Arc<str>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.inner.close();
    }
}

impl Pool {
    /// A builder with the defaults: `Limit::adaptive()`, a queue of 1024, no minimum of
    /// workers, a 10 s idle timeout.
    ///
    /// See the [example on `PoolBuilder`](crate::PoolBuilder#examples).
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    fn inner(&self) -> &Arc<Inner> {
        &self.owner.inner
    }

    /// The pool's name, set with the builder's `name` (the `pool` label of its metrics).
    ///
    /// See the [example on `Pool`](Pool#examples).
    pub fn name(&self) -> &str {
        &self.owner.name
    }

    /// What the `metrics` publisher reads: the name, and a way to take a snapshot with its
    /// latency counts that does not keep the pool open.
    #[cfg(feature = "metrics")]
    pub(crate) fn metrics_source(&self) -> crate::metrics::Source {
        let inner = Arc::clone(self.inner());
        crate::metrics::Source::pool(self.owner.name.clone(), move || {
            inner.snapshot_with_latencies()
        })
    }

    /// Submits a future without waiting.
    ///
    /// # Errors
    ///
    /// * [`SubmitError::Full`] when the limit and the queue are both full (or the memory
    ///   budget would be exceeded), and also while other callers are parked in
    ///   [`submit`](Pool::submit): they were first.
    /// * [`SubmitError::Closed`] once `close` or a shutdown began.
    ///
    /// The future comes back inside the error, unpolled.
    ///
    /// See the [example on `Pool`](Pool#examples).
    pub fn try_submit<F, T>(&self, fut: F) -> Result<TaskHandle<T>, SubmitError<F>>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.try_submit_with(fut, JobOptions::default())
    }

    /// As [`try_submit`](Pool::try_submit), with a deadline: if the task is still queued
    /// when `deadline` passes, it is shed (never runs; its handle reports
    /// [`TaskError::is_shed`]). A task that already started is not affected.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use surgepool::{Limit, Pool};
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let pool = Pool::builder().limit(Limit::fixed(1)).build().unwrap();
    /// let busy = pool.try_submit(tokio::time::sleep(Duration::from_secs(1))).unwrap();
    /// let deadline = Instant::now() + Duration::from_millis(100);
    /// let late = pool.try_submit_with_deadline(async { "too late" }, deadline).unwrap();
    /// busy.await.unwrap();
    /// assert!(late.await.unwrap_err().is_shed());
    /// # }
    /// ```
    pub fn try_submit_with_deadline<F, T>(
        &self,
        fut: F,
        deadline: Instant,
    ) -> Result<TaskHandle<T>, SubmitError<F>>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let options = JobOptions {
            deadline: Some(deadline),
            weight: 0,
        };
        self.try_submit_with(fut, options)
    }

    /// As [`try_submit`](Pool::try_submit), declaring that the task holds `bytes` of memory
    /// from acceptance to its end. With a [`memory_budget`](PoolBuilder::memory_budget),
    /// admission stops (`Full`) while the declared bytes in flight would pass the budget —
    /// memory limited by admission control, not by hoping the allocator copes.
    ///
    /// Without a budget any weight is admitted, except one that would bring the declared
    /// bytes in flight past `u64::MAX`: that one is refused as `Full` (and counted as
    /// rejected), like one over a budget.
    ///
    /// # Examples
    ///
    /// ```
    /// use surgepool::Pool;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = Pool::builder().memory_budget(1_000_000).build().unwrap();
    /// let a = pool.try_submit_weighted(async {}, 600_000).unwrap();
    /// assert!(pool.try_submit_weighted(async {}, 600_000).unwrap_err().is_full());
    /// a.await.unwrap();
    /// assert!(pool.try_submit_weighted(async {}, 600_000).is_ok());
    /// # }
    /// ```
    pub fn try_submit_weighted<F, T>(
        &self,
        fut: F,
        bytes: u64,
    ) -> Result<TaskHandle<T>, SubmitError<F>>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let options = JobOptions {
            deadline: None,
            weight: bytes,
        };
        self.try_submit_with(fut, options)
    }

    fn try_submit_with<F, T>(
        &self,
        fut: F,
        options: JobOptions,
    ) -> Result<TaskHandle<T>, SubmitError<F>>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        match self.inner().try_admit(fut, with_handle, options, None) {
            Ok(task) => Ok(TaskHandle::new(task, self.inner().clone())),
            Err((fut, Refusal::Full | Refusal::InLine(_))) => Err(SubmitError::Full(fut)),
            Err((fut, Refusal::Closed)) => Err(SubmitError::Closed(fut)),
        }
    }

    /// Submits a future, waiting for room as long as it takes.
    ///
    /// Waiting callers are served first come, first served, and `try_submit` does not
    /// barge past them.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Closed`] if the pool is or becomes closed while waiting.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: if the returned future is dropped before it completes, nothing was
    /// admitted (the job is dropped with it) and the next waiter gets its turn.
    ///
    /// # Examples
    ///
    /// ```
    /// use surgepool::{Limit, Pool, SubmitError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Pool::builder().limit(Limit::fixed(1)).queue_capacity(0).build()?;
    /// let first = pool.try_submit(async { 1 })?;
    /// // No room now (limit 1, no queue): `submit` waits until `first` is done.
    /// let second = pool.submit(async { 2 }).await?;
    /// assert_eq!(first.await? + second.await?, 3);
    /// pool.spawn(async { /* detached: nobody awaits it */ }).await?;
    ///
    /// pool.close();
    /// assert!(matches!(pool.try_submit(async { 3 }), Err(SubmitError::Closed(_))));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn submit<F, T>(&self, fut: F) -> Result<TaskHandle<T>, SubmitError<F>>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let task = submit::wait(self.inner(), fut, with_handle, None).await?;
        Ok(TaskHandle::new(task, self.inner().clone()))
    }

    /// Submits a future, waiting at most `wait` for room.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Timeout`] (with the future) when no room came in time;
    /// [`SubmitError::Closed`] if the pool is or becomes closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`submit`](Pool::submit).
    ///
    /// See the [example on `Pool`](Pool#examples).
    pub async fn submit_timeout<F, T>(
        &self,
        fut: F,
        wait: Duration,
    ) -> Result<TaskHandle<T>, SubmitError<F>>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let deadline = Instant::now().checked_add(wait);
        // A wait too long to represent is a wait without deadline.
        let task = submit::wait(self.inner(), fut, with_handle, deadline).await?;
        Ok(TaskHandle::new(task, self.inner().clone()))
    }

    /// The pool's accounting now; see [`Snapshot`] for the identities it keeps.
    ///
    /// See the [example on `Snapshot`](Snapshot#examples).
    pub fn snapshot(&self) -> Snapshot {
        self.inner().snapshot()
    }

    /// Stops accepting work: later submits get [`SubmitError::Closed`]. Queued and running
    /// tasks go on. Idempotent.
    ///
    /// See the [example on `submit`](Pool::submit).
    pub fn close(&self) {
        self.inner().close();
    }

    /// `true` once `close` or a shutdown began.
    ///
    /// See the [example on `Pool`](Pool#examples).
    pub fn is_closed(&self) -> bool {
        self.inner().snapshot_closed()
    }

    /// The counters of the pool's limiter: the current limit, the tasks in flight, and how
    /// many finished tasks it counted as succeeded, dropped or ignored.
    ///
    /// Read-only on purpose: a permit taken from the pool's own limiter would hold a pool
    /// slot that no task uses.
    ///
    /// See the [example on `Pool`](Pool#examples).
    pub fn limiter_stats(&self) -> crate::limit::LimiterStats {
        self.inner().limiter.stats()
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self.inner(), f)
    }
}

/// Makes an admitted future into a task with a handle.
fn with_handle<F>(fut: F) -> (Job, StdArc<Task<F>>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let task = Task::new(fut);
    (Job::Shared(task.clone()), task)
}
