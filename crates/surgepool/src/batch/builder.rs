//! [`BatcherBuilder`]: the batcher's settings, validated by `build`.

use std::fmt;
use std::future::Future;
use std::sync::Arc as StdArc;
use std::time::Duration;

use tokio::runtime::Handle;

use super::inner::{FlushFn, Inner, Settings};
use super::{Batcher, OnFailure};
use crate::error::BuildError;
use crate::limit::{Limit, Limiter};
use crate::sync::Arc;

/// Seed 001's batch: 1000 rows per transaction.
pub(crate) const DEFAULT_MAX_BATCH_SIZE: usize = 1000;
/// The default queue holds this many full batches.
pub(crate) const DEFAULT_QUEUE_BATCHES: usize = 10;

/// Builds a [`Batcher`]. Every setting is checked by [`build`](BatcherBuilder::build), which
/// returns a [`BuildError`] naming the wrong one; no setter panics.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use surgepool::batch::{Batcher, OnFailure};
/// use surgepool::Limit;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), surgepool::BuildError> {
/// let batcher: Batcher<String, u64> = Batcher::builder(|rows: Vec<String>| async move {
///     // One transaction for the whole batch; one output per row, in order.
///     Ok::<_, std::io::Error>((0..rows.len() as u64).collect())
/// })
/// .max_batch_size(1000)                     // default 1000 (seed 001)
/// .max_linger(Duration::from_millis(2))      // default: none (flush when a flusher is free)
/// .limit(Limit::fixed(4))                   // default: Limit::adaptive()
/// .queue_capacity(100_000)                  // default: 10 × max_batch_size
/// .queue_timeout(Duration::from_secs(1))    // default: none
/// .on_failure(OnFailure::Bisect)            // default: OnFailure::FailBatch
/// .build()?;
/// # drop(batcher);
/// # Ok(())
/// # }
/// ```
pub struct BatcherBuilder<T, R> {
    flush: Box<FlushFn<T, R>>,
    cloner: Option<fn(&T) -> T>,
    max_batch_size: usize,
    max_linger: Option<Duration>,
    limit: Limit,
    queue_capacity: Option<usize>,
    queue_timeout: Option<Duration>,
    on_failure: OnFailure,
    runtime: Option<Handle>,
}

impl<T: Send + 'static, R: Send + 'static> BatcherBuilder<T, R> {
    pub(crate) fn new<F, Fut, E>(flush: F) -> BatcherBuilder<T, R>
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<R>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let erased: Box<FlushFn<T, R>> = Box::new(move |items| {
            let future = flush(items);
            Box::pin(async move { future.await.map_err(|e| StdArc::from(e.into())) })
        });
        BatcherBuilder {
            flush: erased,
            cloner: None,
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            max_linger: None,
            limit: Limit::adaptive(),
            queue_capacity: None,
            queue_timeout: None,
            on_failure: OnFailure::FailBatch,
            runtime: None,
        }
    }

    /// The most items one flush receives (at least 1). Default: 1000.
    ///
    /// Batches are never padded: a flush takes whatever is queued, up to this many.
    ///
    /// See the [example on `BatcherBuilder`](BatcherBuilder#examples).
    pub fn max_batch_size(mut self, items: usize) -> Self {
        self.max_batch_size = items;
        self
    }

    /// How long an item may wait for others before its batch is flushed anyway. Default:
    /// none, "smart batching": a batch goes as soon as a flusher is free, with whatever is
    /// queued, so a lone item under light load waits for nothing and batches grow with the
    /// load by themselves. A linger only helps when flushes are cheap to start but slow to
    /// sync and the limit is tight; see the module's README.
    ///
    /// See the [example on `BatcherBuilder`](BatcherBuilder#examples).
    pub fn max_linger(mut self, linger: Duration) -> Self {
        self.max_linger = Some(linger);
        self
    }

    /// How many flushes may run at once. Default: [`Limit::adaptive()`], fed by each
    /// flush's latency. Set it to at most your connection pool's size.
    ///
    /// See the [example on `BatcherBuilder`](BatcherBuilder#examples).
    pub fn limit(mut self, limit: Limit) -> Self {
        self.limit = limit;
        self
    }

    /// How many items may wait for a flush (at least 1). Default: 10 × `max_batch_size`.
    /// Past it, `try_submit` hands the item back as `Full`.
    ///
    /// See the [example on `BatcherBuilder`](BatcherBuilder#examples).
    pub fn queue_capacity(mut self, items: usize) -> Self {
        self.queue_capacity = Some(items);
        self
    }

    /// Items that waited in the queue longer than this are shed (their receipt says so)
    /// instead of flushed. Default: none.
    ///
    /// See the [example on `BatcherBuilder`](BatcherBuilder#examples).
    pub fn queue_timeout(mut self, wait: Duration) -> Self {
        self.queue_timeout = Some(wait);
        self
    }

    /// Runs flushes on this runtime instead of the ambient one, so the batcher can be built
    /// outside a runtime.
    ///
    /// See the [example on `BatcherBuilder`](BatcherBuilder#examples).
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Checks the settings and builds the batcher.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the setting: `max_batch_size` or `queue_capacity` of 0, a
    /// limit whose settings cannot work, or no tokio runtime (build inside one, or pass
    /// [`runtime`](Self::runtime)).
    ///
    /// See the [example on `BatcherBuilder`](BatcherBuilder#examples).
    pub fn build(self) -> Result<Batcher<T, R>, BuildError> {
        if self.max_batch_size == 0 {
            return Err(BuildError::new(
                "max_batch_size",
                "must be at least 1: a flush takes at least one item",
            ));
        }
        let queue_capacity = self
            .queue_capacity
            .unwrap_or_else(|| self.max_batch_size.saturating_mul(DEFAULT_QUEUE_BATCHES));
        if queue_capacity == 0 {
            return Err(BuildError::new(
                "queue_capacity",
                "must be at least 1: every item waits in the queue until a flush takes it",
            ));
        }
        let limiter = Limiter::new(self.limit)?;
        let runtime = match self.runtime {
            Some(handle) => handle,
            None => Handle::try_current().map_err(|_| {
                BuildError::new(
                    "runtime",
                    "no tokio runtime: build the batcher inside one, or pass `runtime(handle)`",
                )
            })?,
        };
        let settings = Settings {
            max_batch_size: self.max_batch_size,
            max_linger: self.max_linger,
            queue_capacity,
            queue_timeout: self.queue_timeout,
            on_failure: self.on_failure,
        };
        Ok(Batcher {
            inner: Arc::new(Inner::new(
                self.flush,
                self.cloner,
                limiter,
                settings,
                runtime,
            )),
        })
    }
}

impl<T: Clone + Send + 'static, R: Send + 'static> BatcherBuilder<T, R> {
    /// What a failed flush does to its items. Default: [`OnFailure::FailBatch`].
    ///
    /// [`OnFailure::Bisect`] retries a failed batch in halves until the failing items stand
    /// alone, so one poison item does not sink the other 999. It retries items, so it needs
    /// `T: Clone` (each flush of more than one item keeps a copy), and it is only sound
    /// when a flush is atomic, one transaction: a flush that committed half its rows and
    /// then failed would commit them twice on the retry.
    ///
    /// See the [example on `BatcherBuilder`](BatcherBuilder#examples).
    pub fn on_failure(mut self, policy: OnFailure) -> Self {
        self.on_failure = policy;
        self.cloner = Some(T::clone);
        self
    }
}

impl<T, R> fmt::Debug for BatcherBuilder<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatcherBuilder")
            .field("max_batch_size", &self.max_batch_size)
            .field("max_linger", &self.max_linger)
            .field("limit", &self.limit)
            .field("queue_capacity", &self.queue_capacity)
            .field("queue_timeout", &self.queue_timeout)
            .field("on_failure", &self.on_failure)
            .finish_non_exhaustive()
    }
}
