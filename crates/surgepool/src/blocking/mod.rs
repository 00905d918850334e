//! [`BlockingPool`]: bounded concurrency for closures on OS threads.

mod builder;
mod inner;
#[cfg(all(test, loom))]
mod loom;
mod task;
mod worker;

use std::time::Duration;

use tokio::time::Instant;

pub use builder::BlockingPoolBuilder;
pub use task::BlockingHandle;
use task::{BlockingJob, Closure, Detached};

use crate::error::SubmitError;
use crate::stats::{ShutdownReport, Snapshot};
use crate::sync::Arc;
use inner::{Inner, Refusal};

/// A pool of OS threads for CPU-bound or blocking closures, with the same contract as
/// [`Pool`](crate::Pool): bounded concurrency (by default the machine's available
/// parallelism — seed 000: CPU work wants the core count), a bounded queue, rejected work
/// handed back, panics isolated, draining shutdown, exact accounting. It needs no runtime.
///
/// Threads start on demand up to the limit and retire after `idle_timeout`.
///
/// A panic in user code never kills a thread: not in a closure (it ends as panicked), nor
/// in the destructor of its captures, of its output (when its handle was dropped), or of a
/// panic payload. Should the pool's own code panic on a thread, the closure the thread held
/// next goes to another thread, so nothing is lost and no slot leaks.
///
/// Work whose result nobody waits for is cheapest through [`try_spawn`](Self::try_spawn)
/// and [`spawn_timeout`](Self::spawn_timeout): no handle, and no allocation for a small
/// closure.
///
/// # Examples
///
/// ```
/// use surgepool::{BlockingPool, Limit};
///
/// let pool = BlockingPool::builder().limit(Limit::fixed(4)).queue_capacity(1024).build()?;
/// let handles: Vec<_> = (0..8u64)
///     .map(|i| pool.try_submit(move || i * i).expect("room for 8"))
///     .collect();
/// let sum: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
/// assert_eq!(sum, 140);
/// let report = pool.shutdown();
/// assert!(!report.timed_out);
/// # Ok::<(), surgepool::BuildError>(())
/// ```
#[derive(Clone)]
pub struct BlockingPool {
    owner: Arc<Owner>,
}

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

impl BlockingPool {
    /// A builder with the defaults: `Limit::fixed(available_parallelism)`, a queue of 1024.
    ///
    /// See the [example on `BlockingPoolBuilder`](crate::BlockingPoolBuilder#examples).
    pub fn builder() -> BlockingPoolBuilder {
        BlockingPoolBuilder::new()
    }

    fn inner(&self) -> &Arc<Inner> {
        &self.owner.inner
    }

    /// The pool's name, set with the builder's `name` (the `pool` label of its metrics).
    ///
    /// See the [example on `BlockingPool`](BlockingPool#examples).
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

    /// Submits a closure without waiting.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Full`] when the limit and the queue are full (or other callers wait
    /// in [`submit_timeout`](Self::submit_timeout): they were first);
    /// [`SubmitError::Closed`] once the pool was closed. The closure comes back.
    ///
    /// See the [example on `BlockingPool`](BlockingPool#examples).
    pub fn try_submit<F, T>(&self, f: F) -> Result<BlockingHandle<T>, SubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.submit_inner(f, None, None)
    }

    /// As [`try_submit`](Self::try_submit); if the closure still waits in the queue when
    /// `deadline` passes, it is shed (never runs; its handle reports `is_shed`).
    ///
    /// See the [example on `BlockingPool`](BlockingPool#examples) for `try_submit`.
    pub fn try_submit_with_deadline<F, T>(
        &self,
        f: F,
        deadline: Instant,
    ) -> Result<BlockingHandle<T>, SubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.submit_inner(f, Some(deadline), None)
    }

    /// Submits a closure, blocking the calling thread at most `wait` for room. Waiting
    /// callers are served in arrival order.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Timeout`] when no room came in time; [`SubmitError::Closed`] if the
    /// pool is or becomes closed. The closure comes back.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use surgepool::{BlockingPool, Limit};
    ///
    /// let pool = BlockingPool::builder().limit(Limit::fixed(1)).queue_capacity(0).build()?;
    /// let (release, blocked) = std::sync::mpsc::channel::<()>();
    /// let busy = pool.try_submit(move || blocked.recv().is_ok()).expect("room for one");
    ///
    /// // Full: wait at most 1 ms for room, then get the closure back.
    /// let refused = pool.submit_timeout(|| 2, Duration::from_millis(1)).err().unwrap();
    /// assert!(refused.is_timeout());
    /// assert_eq!(refused.into_inner()(), 2); // run it here instead
    ///
    /// release.send(()).unwrap();
    /// assert!(busy.join().unwrap());
    /// let report = pool.shutdown_timeout(Duration::from_secs(1));
    /// assert!(!report.timed_out);
    /// # Ok::<(), surgepool::BuildError>(())
    /// ```
    pub fn submit_timeout<F, T>(
        &self,
        f: F,
        wait: Duration,
    ) -> Result<BlockingHandle<T>, SubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.submit_inner(f, None, Some(wait))
    }

    fn submit_inner<F, T>(
        &self,
        f: F,
        deadline: Option<Instant>,
        wait: Option<Duration>,
    ) -> Result<BlockingHandle<T>, SubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let shared = |f| {
            let closure = Closure::new(f);
            (BlockingJob::Shared(closure.clone()), closure)
        };
        match self.inner().admit(f, deadline, wait, shared) {
            Ok(closure) => Ok(BlockingHandle::new(closure)),
            Err((f, refusal)) => Err(refusal.into_error(f)),
        }
    }

    /// Runs a closure without a handle ("fire and forget"), without waiting. The cheapest
    /// way to hand the pool work whose result nobody waits for: it is counted, limited,
    /// queued, shed, drained and cancelled exactly like a closure from
    /// [`try_submit`](Self::try_submit), but it has no outcome slot to allocate and
    /// publish.
    ///
    /// # Allocation
    ///
    /// None, in steady state, when the closure is small: it is stored inline in the
    /// pool's queue entry if it and a one-byte "already run" flag fit in 64 bytes (8 words;
    /// 32 bytes on 32-bit targets) aligned to at most a word. The flag needs no byte of
    /// its own when the captures include a reference, `Box`, `Arc`, `Vec` or another type
    /// with an invalid bit pattern, so such a closure may use all 64. A larger or more
    /// aligned closure costs one allocation. A refused closure costs none.
    ///
    /// # Panics
    ///
    /// A panic in the closure is caught: it is counted in
    /// [`Snapshot::panicked`](crate::Snapshot::panicked) and passed to the
    /// [`on_panic`](crate::BlockingPoolBuilder::on_panic) hook; the thread and the pool
    /// live on. Without a handle, the hook is the only place that sees it.
    ///
    /// # Cancellation
    ///
    /// Nothing can abort a detached closure. It can still end without running: shed by
    /// the queue timeout or CoDel, or cancelled by [`shutdown_timeout`](Self::shutdown_timeout)
    /// while queued; then it is dropped (counted as shed or cancelled).
    ///
    /// # Errors
    ///
    /// [`SubmitError::Full`] when the limit and the queue are full (or other callers wait
    /// in [`submit_timeout`](Self::submit_timeout) or [`spawn_timeout`](Self::spawn_timeout):
    /// they were first); [`SubmitError::Closed`] once the pool was closed. The closure
    /// comes back, not run.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use surgepool::{BlockingPool, Limit, SubmitError};
    ///
    /// let pool = BlockingPool::builder().limit(Limit::fixed(2)).queue_capacity(64).build()?;
    /// let sum = Arc::new(AtomicU64::new(0));
    /// for i in 1..=10u64 {
    ///     let sum = sum.clone();
    ///     match pool.try_spawn(move || {
    ///         sum.fetch_add(i, Ordering::Relaxed);
    ///     }) {
    ///         Ok(()) => {}
    ///         // Full: run it here instead (the closure came back untouched).
    ///         Err(SubmitError::Full(f)) => f(),
    ///         Err(other) => panic!("{other}"),
    ///     }
    /// }
    /// pool.shutdown(); // waits for every accepted closure
    /// assert_eq!(sum.load(Ordering::Relaxed), 55);
    /// # Ok::<(), surgepool::BuildError>(())
    /// ```
    pub fn try_spawn<F>(&self, f: F) -> Result<(), SubmitError<F>>
    where
        F: FnOnce() + Send + 'static,
    {
        self.spawn_inner(f, None)
    }

    /// As [`try_spawn`](Self::try_spawn), blocking the calling thread at most `wait` for
    /// room, as [`submit_timeout`](Self::submit_timeout) does. Waiting callers of both are
    /// served in arrival order.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Timeout`] when no room came in time; [`SubmitError::Closed`] if the
    /// pool is or becomes closed. The closure comes back, not run.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use std::time::Duration;
    /// use surgepool::{BlockingPool, Limit};
    ///
    /// let pool = BlockingPool::builder().limit(Limit::fixed(1)).queue_capacity(0).build()?;
    /// let (tx, rx) = mpsc::channel();
    /// pool.try_spawn(move || tx.send("done").unwrap()).unwrap();
    /// // The only slot may still be taken: wait (up to a minute) for it.
    /// let (tx2, rx2) = mpsc::channel();
    /// pool.spawn_timeout(move || tx2.send("also done").unwrap(), Duration::from_secs(60))
    ///     .unwrap();
    /// assert_eq!(rx.recv().unwrap(), "done");
    /// assert_eq!(rx2.recv().unwrap(), "also done");
    /// # Ok::<(), surgepool::BuildError>(())
    /// ```
    pub fn spawn_timeout<F>(&self, f: F, wait: Duration) -> Result<(), SubmitError<F>>
    where
        F: FnOnce() + Send + 'static,
    {
        self.spawn_inner(f, Some(wait))
    }

    fn spawn_inner<F>(&self, f: F, wait: Option<Duration>) -> Result<(), SubmitError<F>>
    where
        F: FnOnce() + Send + 'static,
    {
        let detached = |f| (BlockingJob::Detached(Detached::new(f)), ());
        self.inner()
            .admit(f, None, wait, detached)
            .map_err(|(f, refusal)| refusal.into_error(f))
    }

    /// The pool's accounting now; see [`Snapshot`].
    ///
    /// See the [example on `Snapshot`](Snapshot#examples) (a `Pool`'s; the fields are the same).
    pub fn snapshot(&self) -> Snapshot {
        self.inner().snapshot()
    }

    /// Stops accepting work; queued and running closures go on. Idempotent.
    ///
    /// See the [example on `BlockingPool`](BlockingPool#examples).
    pub fn close(&self) {
        self.inner().close();
    }

    /// `true` once `close` or a shutdown began.
    ///
    /// See the [example on `BlockingPool`](BlockingPool#examples).
    pub fn is_closed(&self) -> bool {
        self.inner().is_closed()
    }

    /// Closes the pool and blocks until every accepted closure has finished: when it
    /// returns, every handle has its result ([`BlockingHandle::is_finished`]), and the pool
    /// has dropped every closure and every output that no handle will take.
    ///
    /// Idempotent: concurrent and later callers all return once drained, with the same
    /// report. A grace deadline of [`shutdown_timeout`](Self::shutdown_timeout) that passed
    /// before the drain ended is part of it: `timed_out` is then `true` for every later
    /// report too.
    ///
    /// See the [example on `BlockingPool`](BlockingPool#examples).
    pub fn shutdown(&self) -> ShutdownReport {
        let inner = self.inner();
        crate::trace::event!(info, pool = %self.name(), "shutdown began");
        inner.close();
        inner.wait_drained(None);
        let report = inner.report();
        crate::trace::event!(info, pool = %self.name(), drained = report.drained, cancelled = report.cancelled, timed_out = report.timed_out, "shutdown ended");
        report
    }

    /// As [`shutdown`](Self::shutdown), blocking at most about `grace`: then every closure
    /// still queued is cancelled (counted in the report). A closure already running on a
    /// thread cannot be interrupted: it finishes in the background, its handle gets its
    /// result, and the pool's snapshot counts it when it ends.
    ///
    /// A call that returns at its deadline reports what had happened by then (closures
    /// still running drain later, and a later `shutdown()` counts them); its `timed_out`
    /// stays `true` in every later report.
    ///
    /// See the [example on `submit_timeout`](BlockingPool::submit_timeout).
    pub fn shutdown_timeout(&self, grace: Duration) -> ShutdownReport {
        let inner = self.inner();
        crate::trace::event!(info, pool = %self.name(), grace = ?grace, "shutdown began");
        inner.close();
        let until = Instant::now().checked_add(grace);
        let report = if !inner.wait_drained(until) && inner.cancel_queued() {
            // Closures still run: they finish in the background.
            inner.report()
        } else {
            // Drained, or only the last outcomes are still being handed over: wait for that.
            inner.wait_drained(None);
            inner.report()
        };
        crate::trace::event!(info, pool = %self.name(), drained = report.drained, cancelled = report.cancelled, timed_out = report.timed_out, "shutdown ended");
        report
    }

    /// The counters of the pool's limiter: the current limit, the tasks in flight, and how
    /// many finished tasks it counted as succeeded, dropped or ignored.
    ///
    /// Read-only on purpose: a permit taken from the pool's own limiter would hold a pool
    /// slot that no task uses.
    ///
    /// See the [example on `BlockingPool`](BlockingPool#examples).
    pub fn limiter_stats(&self) -> crate::limit::LimiterStats {
        self.inner().limiter.stats()
    }
}

impl Refusal {
    fn into_error<F>(self, f: F) -> SubmitError<F> {
        match self {
            Refusal::Full => SubmitError::Full(f),
            Refusal::Closed => SubmitError::Closed(f),
            Refusal::Timeout => SubmitError::Timeout(f),
        }
    }
}

impl std::fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self.inner(), f)
    }
}
