//! The blocking pool. (Skeleton: the implementation lands with the core-pool issue.)

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::error::{BuildError, SubmitError, TaskError};
use crate::limit::Limit;
use crate::stats::{ShutdownReport, Snapshot};

/// A pool of OS threads for CPU-bound or blocking closures.
#[derive(Debug, Clone)]
pub struct BlockingPool {
    _private: (),
}

/// Builds a [`BlockingPool`].
#[derive(Debug, Clone, Default)]
pub struct BlockingPoolBuilder {
    limit: Option<Limit>,
    queue_capacity: usize,
}

/// A handle to a closure in a [`BlockingPool`].
#[derive(Debug)]
pub struct BlockingHandle<T> {
    _marker: std::marker::PhantomData<T>,
}

impl BlockingPool {
    /// A builder with the defaults.
    pub fn builder() -> BlockingPoolBuilder {
        BlockingPoolBuilder::default()
    }
    /// Submits without waiting.
    pub fn try_submit<F, T>(&self, f: F) -> Result<BlockingHandle<T>, SubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Err(SubmitError::Closed(f))
    }
    /// Submits, blocking at most `wait`.
    pub fn submit_timeout<F, T>(
        &self,
        f: F,
        _wait: Duration,
    ) -> Result<BlockingHandle<T>, SubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.try_submit(f)
    }
    /// The pool's accounting now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::default()
    }
    /// Stops accepting work.
    pub fn close(&self) {}
    /// Closes and drains (blocking).
    pub fn shutdown(&self) -> ShutdownReport {
        ShutdownReport::default()
    }
    /// Closes, drains, cancels what is left after `grace`.
    pub fn shutdown_timeout(&self, _grace: Duration) -> ShutdownReport {
        ShutdownReport::default()
    }
}

impl BlockingPoolBuilder {
    /// The concurrency limit.
    pub fn limit(mut self, limit: Limit) -> Self {
        self.limit = Some(limit);
        self
    }
    /// How many closures may wait.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }
    /// Builds the pool.
    pub fn build(self) -> Result<BlockingPool, BuildError> {
        if let Some(limit) = &self.limit {
            limit.validate()?;
        }
        Ok(BlockingPool { _private: () })
    }
}

impl<T> BlockingHandle<T> {
    /// Waits for the result.
    pub fn join(self) -> Result<T, TaskError> {
        Err(TaskError::cancelled())
    }
}

impl<T> Future for BlockingHandle<T> {
    type Output = Result<T, TaskError>;
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Err(TaskError::cancelled()))
    }
}
