//! Adaptive group commit: single items in, bounded concurrent batch flushes out.
//!
//! A service receives one row per request, from thousands of concurrent requests, while a
//! database writes a thousand rows in one transaction for little more than the cost of one
//! (seed 001). A [`Batcher`] joins the two:
//!
//! * it gathers single items into batches of up to `max_batch_size`;
//! * it runs a bounded number of flushes at once (a [`Limit`], adaptive by default, fed by
//!   each flush's latency);
//! * it tells each submitter when *its* item committed, with its own output, or why not
//!   ([`Receipt`], [`BatchError`]);
//! * it hands items back when its queue is full ([`SubmitError::Full`]: the caller's 503),
//!   and never loses an accepted one: every accepted item ends committed, failed, shed or
//!   cancelled, and is counted ([`BatchSnapshot`]).
//!
//! Batches adapt by themselves ("smart batching", M. Thompson): a batch goes as soon as a
//! flusher is free, with whatever is queued. Under light load an item is flushed alone and
//! at once; under heavy load the queue fills while flushes run, so batches grow until they
//! carry the arrival rate. The design, its sources and what was measured are in
//! `src/batch/README.md`.
//!
//! # Examples
//!
//! ```
//! use surgepool::batch::{Batcher, OnFailure};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The flush: one transaction for the whole batch, one output per item, in order.
//! let batcher: Batcher<i64, i64> = Batcher::builder(|rows: Vec<i64>| async move {
//!     if rows.contains(&-1) {
//!         return Err("constraint violated"); // the transaction rolled back
//!     }
//!     Ok(rows.iter().map(|r| r * 10).collect())
//! })
//! .on_failure(OnFailure::Bisect) // a poison row fails alone
//! .build()?;
//!
//! let good = batcher.try_submit(4)?;
//! let bad = batcher.try_submit(-1)?;
//! assert_eq!(good.await?, 40);
//! assert!(bad.await.unwrap_err().is_flush_error());
//!
//! let report = batcher.shutdown().await;
//! assert!(!report.timed_out);
//! let s = batcher.snapshot();
//! assert_eq!((s.committed, s.failed), (1, 1));
//! # Ok(())
//! # }
//! ```

mod builder;
mod error;
mod flush;
mod inner;
mod receipt;
mod snapshot;

use std::fmt;
use std::time::Duration;

pub use builder::BatcherBuilder;
pub use error::BatchError;
pub use receipt::Receipt;
pub use snapshot::{BatchSizeSummary, BatchSnapshot};

use crate::error::SubmitError;
use crate::stats::ShutdownReport;
use crate::sync::Arc;
#[allow(unused_imports)] // for the docs' links
use crate::Limit;
use inner::Inner;

/// What a failed flush does to its items.
///
/// # Examples
///
/// ```
/// use surgepool::batch::{Batcher, OnFailure};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let batcher = Batcher::builder(|ids: Vec<u32>| async move {
///     if ids.contains(&0) { Err("id 0 is reserved") } else { Ok(ids) }
/// })
/// .on_failure(OnFailure::FailBatch) // the default: every item of the batch gets the error
/// .build()
/// .unwrap();
/// assert!(batcher.try_submit(0).unwrap().await.is_err());
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnFailure {
    /// Every item of the failed batch gets the flush's error.
    FailBatch,
    /// Retry each half of a failed batch, recursively, until the failing items stand alone:
    /// good items commit, only poison items get the error (seed 001's quarantine, done by
    /// the batcher). Sound only when a flush is atomic (one transaction). Costs about
    /// `2 × log2(batch)` extra flushes per poison item.
    Bisect,
}

/// Gathers single items into batches and flushes them with bounded concurrency; each
/// submitter learns its own item's outcome. Clones share one batcher.
///
/// See the [module documentation](self) for the design and an example.
pub struct Batcher<T, R> {
    inner: Arc<Inner<T, R>>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Batcher {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts building a batcher around `flush`: an async function from a batch of items to
    /// one output per item, in order (`Result<Vec<R>, E>`).
    ///
    /// A flush that returns the wrong number of outputs fails every item of its batch
    /// ([`BatchError::is_output_count`]); one that panics fails them too
    /// ([`BatchError::is_panic`]). Neither takes the batcher down.
    ///
    /// # Examples
    ///
    /// ```
    /// use surgepool::batch::Batcher;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let batcher = Batcher::builder(|words: Vec<String>| async move {
    ///     Ok::<_, std::io::Error>(words.into_iter().map(|w| w.to_uppercase()).collect())
    /// })
    /// .build()
    /// .unwrap();
    /// assert_eq!(batcher.try_submit("hi".to_owned()).unwrap().await.unwrap(), "HI");
    /// # }
    /// ```
    pub fn builder<F, Fut, E>(flush: F) -> BatcherBuilder<T, R>
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Vec<R>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        BatcherBuilder::new(flush)
    }

    /// Queues an item for the next batch. Never waits.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Full`] when the queue is full, [`SubmitError::Closed`] after `close` or
    /// `shutdown` began; the item comes back inside.
    ///
    /// # Examples
    ///
    /// ```
    /// use surgepool::batch::Batcher;
    /// use surgepool::{Limit, SubmitError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let batcher = Batcher::builder(|items: Vec<u8>| async move { Ok::<_, String>(items) })
    ///     .limit(Limit::fixed(1))
    ///     .queue_capacity(1)
    ///     .build()
    ///     .unwrap();
    /// let first = batcher.try_submit(1).unwrap(); // flushing
    /// let second = batcher.try_submit(2).unwrap(); // queued
    /// # let _ = (&first, &second);
    /// match batcher.try_submit(3) {
    ///     Err(SubmitError::Full(item)) => assert_eq!(item, 3), // answer 503 with it
    ///     _ => unreachable!(),
    /// }
    /// # }
    /// ```
    pub fn try_submit(&self, item: T) -> Result<Receipt<R>, SubmitError<T>> {
        self.inner.offer(item, true).map(Receipt::new)
    }

    /// Queues an item, waiting for room in the queue.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Closed`] (with the item) if the batcher closes first.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future before it completes queues nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use surgepool::batch::Batcher;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let batcher = Batcher::builder(|items: Vec<u8>| async move { Ok::<_, String>(items) })
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(batcher.submit(5).await.unwrap().await.unwrap(), 5);
    /// # }
    /// ```
    pub async fn submit(&self, item: T) -> Result<Receipt<R>, SubmitError<T>> {
        self.submit_until(item, None).await
    }

    /// Queues an item, waiting at most `wait` for room (`Duration::MAX` waits for ever).
    ///
    /// # Errors
    ///
    /// [`SubmitError::Timeout`] when no room came in time, [`SubmitError::Closed`] if the
    /// batcher closes first; the item comes back inside.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`submit`](Self::submit).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use surgepool::batch::Batcher;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let batcher = Batcher::builder(|items: Vec<u8>| async move { Ok::<_, String>(items) })
    ///     .build()
    ///     .unwrap();
    /// let receipt = batcher.submit_timeout(5, Duration::from_millis(10)).await.unwrap();
    /// assert_eq!(receipt.await.unwrap(), 5);
    /// # }
    /// ```
    pub async fn submit_timeout(
        &self,
        item: T,
        wait: Duration,
    ) -> Result<Receipt<R>, SubmitError<T>> {
        let deadline = tokio::time::Instant::now().checked_add(wait);
        self.submit_until(item, deadline).await
    }

    async fn submit_until(
        &self,
        mut item: T,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Receipt<R>, SubmitError<T>> {
        loop {
            let room = self.inner.room().notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.inner.offer(item, false) {
                Ok(rx) => return Ok(Receipt::new(rx)),
                Err(SubmitError::Full(back)) => item = back,
                Err(other) => return Err(other),
            }
            match deadline {
                None => room.await,
                Some(at) => {
                    if tokio::time::timeout_at(at, room).await.is_err() {
                        self.inner.count_rejected();
                        return Err(SubmitError::Timeout(item));
                    }
                }
            }
        }
    }

    /// The batcher's accounting and histograms, at one instant.
    ///
    /// # Examples
    ///
    /// See [`BatchSnapshot`].
    pub fn snapshot(&self) -> BatchSnapshot {
        self.inner.snapshot()
    }

    /// Stops accepting items; queued ones (lingering ones included) are flushed at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use surgepool::batch::Batcher;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let batcher = Batcher::builder(|items: Vec<u8>| async move { Ok::<_, String>(items) })
    ///     .build()
    ///     .unwrap();
    /// batcher.close();
    /// assert!(batcher.try_submit(1).unwrap_err().is_closed());
    /// # }
    /// ```
    pub fn close(&self) {
        self.inner.close();
    }

    /// Closes, then waits until every accepted item has its outcome. Idempotent; concurrent
    /// callers all return once drained.
    ///
    /// # Examples
    ///
    /// ```
    /// use surgepool::batch::Batcher;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let batcher = Batcher::builder(|items: Vec<u8>| async move { Ok::<_, String>(items) })
    ///     .build()
    ///     .unwrap();
    /// let receipt = batcher.try_submit(1).unwrap();
    /// let report = batcher.shutdown().await;
    /// assert_eq!((report.drained, report.cancelled), (1, 0));
    /// assert_eq!(receipt.await.unwrap(), 1);
    /// # }
    /// ```
    pub async fn shutdown(&self) -> ShutdownReport {
        self.shutdown_until(None).await
    }

    /// As [`shutdown`](Self::shutdown), but whatever has no outcome after `grace` is
    /// cancelled and counted: queued items, and the items of running flushes, which are
    /// aborted (a flush aborted midway may or may not have committed; its items say
    /// `Cancelled` because the batcher cannot know).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use surgepool::batch::Batcher;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let batcher = Batcher::builder(|items: Vec<u8>| async move {
    ///     tokio::time::sleep(Duration::from_secs(60)).await; // a stuck database
    ///     Ok::<_, String>(items)
    /// })
    /// .build()
    /// .unwrap();
    /// let receipt = batcher.try_submit(1).unwrap();
    /// let report = batcher.shutdown_timeout(Duration::from_secs(1)).await;
    /// assert!(report.timed_out);
    /// assert_eq!(report.cancelled, 1);
    /// assert!(receipt.await.unwrap_err().is_cancelled());
    /// # }
    /// ```
    pub async fn shutdown_timeout(&self, grace: Duration) -> ShutdownReport {
        let deadline = tokio::time::Instant::now().checked_add(grace);
        self.shutdown_until(deadline).await
    }

    async fn shutdown_until(&self, deadline: Option<tokio::time::Instant>) -> ShutdownReport {
        let (ended_before, cancelled_before) = self.inner.ended();
        self.inner.close();
        let timed_out = !self.inner.drained(deadline).await;
        if timed_out {
            self.inner.cancel_all();
        }
        let (ended, cancelled) = self.inner.ended();
        ShutdownReport {
            drained: ended - ended_before,
            cancelled: cancelled - cancelled_before,
            timed_out,
        }
    }
}

impl<T, R> fmt::Debug for Batcher<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}
