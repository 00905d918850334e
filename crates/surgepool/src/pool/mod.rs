//! The async pool. (Skeleton: the implementation lands with the core-pool issue.)

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::error::{BuildError, SubmitError, TaskError};
use crate::limit::Limit;
use crate::stats::{ShutdownReport, Snapshot};

/// An async worker pool on the ambient tokio runtime.
#[derive(Debug, Clone)]
pub struct Pool {
    _private: (),
}

/// Builds a [`Pool`].
#[derive(Debug, Clone, Default)]
pub struct PoolBuilder {
    limit: Limit,
    queue_capacity: usize,
    min_workers: usize,
    idle_timeout: Option<Duration>,
}

/// A handle to a task in a [`Pool`].
#[derive(Debug)]
pub struct TaskHandle<T> {
    _marker: std::marker::PhantomData<T>,
}

impl Pool {
    /// A builder with the defaults.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// Submits without waiting.
    pub fn try_submit<F, T>(&self, fut: F) -> Result<TaskHandle<T>, SubmitError<F>>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        Err(SubmitError::Closed(fut))
    }

    /// Submits, waiting for room.
    pub async fn submit<F, T>(&self, fut: F) -> Result<TaskHandle<T>, SubmitError<F>>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.try_submit(fut)
    }

    /// Submits, waiting at most `wait` for room.
    pub async fn submit_timeout<F, T>(
        &self,
        fut: F,
        _wait: Duration,
    ) -> Result<TaskHandle<T>, SubmitError<F>>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.try_submit(fut)
    }

    /// The pool's accounting now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::default()
    }

    /// Stops accepting work.
    pub fn close(&self) {}

    /// Closes and drains.
    pub async fn shutdown(&self) -> ShutdownReport {
        ShutdownReport::default()
    }

    /// Closes, drains, and cancels what is left after `grace`.
    pub async fn shutdown_timeout(&self, _grace: Duration) -> ShutdownReport {
        ShutdownReport::default()
    }
}

impl PoolBuilder {
    /// The concurrency limit.
    pub fn limit(mut self, limit: Limit) -> Self {
        self.limit = limit;
        self
    }
    /// How many tasks may wait.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }
    /// Workers kept alive while idle.
    pub fn min_workers(mut self, n: usize) -> Self {
        self.min_workers = n;
        self
    }
    /// How long an idle worker above the minimum lives.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = Some(d);
        self
    }
    /// Builds the pool.
    pub fn build(self) -> Result<Pool, BuildError> {
        self.limit.validate()?;
        Ok(Pool { _private: () })
    }
}

impl<T> TaskHandle<T> {
    /// Cancels the task.
    pub fn abort(&self) {}
}

impl<T> Future for TaskHandle<T> {
    type Output = Result<T, TaskError>;
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Err(TaskError::cancelled()))
    }
}
