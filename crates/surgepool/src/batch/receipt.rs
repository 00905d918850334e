//! [`Receipt`]: the future of one item's outcome.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use super::error::BatchError;

/// Resolves once the batch holding the item committed (with the item's own output) or when
/// the item failed, was shed or was cancelled.
///
/// Dropping a receipt does not withdraw the item: it is still flushed and counted, and its
/// output is dropped.
///
/// # Examples
///
/// ```
/// use surgepool::batch::{Batcher, Receipt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let batcher = Batcher::builder(|names: Vec<&'static str>| async move {
///     Ok::<_, std::convert::Infallible>(names.iter().map(|n| n.len()).collect())
/// })
/// .build()
/// .unwrap();
/// let receipt: Receipt<usize> = batcher.try_submit("ferris").unwrap();
/// assert_eq!(receipt.await.unwrap(), 6);
/// # }
/// ```
#[must_use = "a receipt does nothing unless awaited; dropping it still flushes the item"]
pub struct Receipt<R> {
    rx: oneshot::Receiver<Result<R, BatchError>>,
}

impl<R> Receipt<R> {
    pub(crate) fn new(rx: oneshot::Receiver<Result<R, BatchError>>) -> Receipt<R> {
        Receipt { rx }
    }
}

impl<R> Future for Receipt<R> {
    type Output = Result<R, BatchError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // A sender dropped without an answer only happens when the batcher's state went
        // away with the item (its runtime shut down): the item was not committed by us.
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(BatchError::cancelled())))
    }
}

impl<R> fmt::Debug for Receipt<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receipt").finish_non_exhaustive()
    }
}
