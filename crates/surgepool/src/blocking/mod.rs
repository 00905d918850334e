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
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.inner.close();
    }
}

impl BlockingPool {
    /// A builder with the defaults: `Limit::fixed(available_parallelism)`, a queue of 1024.
    pub fn builder() -> BlockingPoolBuilder {
        BlockingPoolBuilder::new()
    }

    fn inner(&self) -> &Arc<Inner> {
        &self.owner.inner
    }

    /// Submits a closure without waiting.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Full`] when the limit and the queue are full (or other callers wait
    /// in [`submit_timeout`](Self::submit_timeout): they were first);
    /// [`SubmitError::Closed`] once the pool was closed. The closure comes back.
    pub fn try_submit<F, T>(&self, f: F) -> Result<BlockingHandle<T>, SubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.submit_inner(f, None, None)
    }

    /// As [`try_submit`](Self::try_submit); if the closure still waits in the queue when
    /// `deadline` passes, it is shed (never runs; its handle reports `is_shed`).
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
    pub fn submit_timeout<F, T>(
        &self,
        f: F,
        wait: Duration,
    ) -> Result<BlockingHandle<T>, SubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // A wait too long to represent: about 30 years is forever enough.
        let until = Instant::now()
            .checked_add(wait)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 30));
        self.submit_inner(f, None, Some(until))
    }

    fn submit_inner<F, T>(
        &self,
        f: F,
        deadline: Option<Instant>,
        wait_until: Option<Instant>,
    ) -> Result<BlockingHandle<T>, SubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.inner().admit(f, deadline, wait_until) {
            Ok(closure) => Ok(BlockingHandle::new(closure)),
            Err((f, Refusal::Full)) => Err(SubmitError::Full(f)),
            Err((f, Refusal::Closed)) => Err(SubmitError::Closed(f)),
            Err((f, Refusal::Timeout)) => Err(SubmitError::Timeout(f)),
        }
    }

    /// The pool's accounting now; see [`Snapshot`].
    pub fn snapshot(&self) -> Snapshot {
        self.inner().snapshot()
    }

    /// Stops accepting work; queued and running closures go on. Idempotent.
    pub fn close(&self) {
        self.inner().close();
    }

    /// `true` once `close` or a shutdown began.
    pub fn is_closed(&self) -> bool {
        self.inner().is_closed()
    }

    /// Closes the pool and blocks until every accepted closure has finished. Idempotent;
    /// concurrent callers all return once drained.
    pub fn shutdown(&self) -> ShutdownReport {
        let inner = self.inner();
        inner.close();
        inner.wait_drained(None);
        inner.report(false)
    }

    /// As [`shutdown`](Self::shutdown), blocking at most about `grace`: then every closure
    /// still queued is cancelled (counted in the report). A closure already running on a
    /// thread cannot be interrupted: it finishes in the background, its handle gets its
    /// result, and the pool's snapshot counts it when it ends.
    pub fn shutdown_timeout(&self, grace: Duration) -> ShutdownReport {
        let inner = self.inner();
        inner.close();
        let until = Instant::now().checked_add(grace);
        if inner.wait_drained(until) {
            return inner.report(false);
        }
        inner.cancel_queued();
        inner.report(true)
    }

    /// The counters of the pool's limiter: the current limit, the tasks in flight, and how
    /// many finished tasks it counted as succeeded, dropped or ignored.
    ///
    /// Read-only on purpose: a permit taken from the pool's own limiter would hold a pool
    /// slot that no task uses.
    pub fn limiter_stats(&self) -> crate::limit::LimiterStats {
        self.inner().limiter.stats()
    }
}

impl std::fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self.inner(), f)
    }
}
