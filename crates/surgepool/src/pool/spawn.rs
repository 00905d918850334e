//! Detached tasks: `try_spawn`, `spawn` and `spawn_timeout` (no handle is made).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::inner::{JobOptions, Refusal};
use super::job::{Detached, Job};
use super::{submit, Pool};
use crate::error::SubmitError;

impl Pool {
    /// Runs a future detached: as [`try_submit`](Pool::try_submit) with the handle dropped,
    /// but cheaper, because no handle is made. A future of up to 64 bytes is stored
    /// inline, so spawning it allocates nothing once the pool is warm; a bigger one is
    /// boxed (one allocation).
    ///
    /// The task is counted like any other; nothing can abort it, and a panic in it is
    /// counted in [`Snapshot::panicked`](crate::Snapshot::panicked) and passed to the
    /// [`on_panic`](super::PoolBuilder::on_panic) hook.
    ///
    /// # Errors
    ///
    /// As [`try_submit`](Pool::try_submit): [`SubmitError::Full`] or
    /// [`SubmitError::Closed`], with the future.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use surgepool::{Limit, Pool};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = Pool::builder().limit(Limit::fixed(4)).build().unwrap();
    /// let sum = Arc::new(AtomicU64::new(0));
    /// for i in 1..=10 {
    ///     let sum = sum.clone();
    ///     pool.try_spawn(async move {
    ///         sum.fetch_add(i, Ordering::Relaxed);
    ///     })
    ///     .unwrap();
    /// }
    /// pool.shutdown().await;
    /// assert_eq!(sum.load(Ordering::Relaxed), 55);
    /// # }
    /// ```
    pub fn try_spawn<F>(&self, fut: F) -> Result<(), SubmitError<F>>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match self
            .inner()
            .try_admit(fut, detached, JobOptions::default(), None)
        {
            Ok(()) => Ok(()),
            Err((fut, Refusal::Full | Refusal::InLine(_))) => Err(SubmitError::Full(fut)),
            Err((fut, Refusal::Closed)) => Err(SubmitError::Closed(fut)),
        }
    }

    /// Runs a future detached, waiting for room: [`try_spawn`](Pool::try_spawn) as
    /// [`submit`](Pool::submit) is to [`try_submit`](Pool::try_submit).
    ///
    /// # Errors
    ///
    /// [`SubmitError::Closed`] if the pool is or becomes closed while waiting.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`submit`](Pool::submit).
    ///
    /// See the examples on [`try_spawn`](Pool::try_spawn) and [`submit`](Pool::submit).
    pub async fn spawn<F>(&self, fut: F) -> Result<(), SubmitError<F>>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        submit::wait(self.inner(), fut, detached, None).await
    }

    /// Runs a future detached, waiting at most `wait` for room.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Timeout`] when no room came in time; [`SubmitError::Closed`] if the
    /// pool is or becomes closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`submit`](Pool::submit).
    ///
    /// See the example on [`try_spawn`](Pool::try_spawn); the wait works as in [`submit_timeout`](Pool::submit_timeout).
    pub async fn spawn_timeout<F>(&self, fut: F, wait: Duration) -> Result<(), SubmitError<F>>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let deadline = Instant::now().checked_add(wait);
        submit::wait(self.inner(), fut, detached, deadline).await
    }
}

/// Makes an admitted future into a detached job.
fn detached<F>(fut: F) -> (Job, ())
where
    F: Future<Output = ()> + Send + 'static,
{
    (Job::Detached(Detached::new(fut)), ())
}
