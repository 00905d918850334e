//! [`BatchError`]: why an accepted item was not committed.

use std::fmt;
use std::sync::Arc;

/// The flush's own error, shared by every item of the batch it failed.
pub(crate) type FlushError = Arc<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Clone)]
enum Kind {
    /// The flush returned an error for a batch that held this item.
    Flush(FlushError),
    /// The flush returned a number of outputs other than its number of items.
    OutputCount { items: usize, outputs: usize },
    /// The flush panicked (while being called or polled).
    Panic(Option<String>),
    /// Shutdown's grace period ran out first, or the runtime went away.
    Cancelled,
    /// The item waited in the queue longer than `queue_timeout`.
    Shed,
}

/// Why an accepted item was not committed. Every accepted item ends as exactly one of: its
/// output (committed), or one of these errors.
///
/// # Examples
///
/// ```
/// use surgepool::batch::Batcher;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let batcher: Batcher<u32, u32> = Batcher::builder(|items: Vec<u32>| async move {
///     if items.contains(&13) { Err("unlucky") } else { Ok(items) }
/// })
/// .build()
/// .unwrap();
/// let err = batcher.try_submit(13).unwrap().await.unwrap_err();
/// assert!(err.is_flush_error());
/// assert_eq!(err.to_string(), "the batch's flush failed: unlucky");
/// # }
/// ```
#[derive(Clone)]
pub struct BatchError {
    kind: Kind,
}

impl BatchError {
    pub(crate) fn flush(error: FlushError) -> BatchError {
        BatchError {
            kind: Kind::Flush(error),
        }
    }

    pub(crate) fn output_count(items: usize, outputs: usize) -> BatchError {
        BatchError {
            kind: Kind::OutputCount { items, outputs },
        }
    }

    pub(crate) fn panic(payload: &(dyn std::any::Any + Send)) -> BatchError {
        let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
            Some((*s).to_owned())
        } else {
            payload.downcast_ref::<String>().cloned()
        };
        BatchError {
            kind: Kind::Panic(message),
        }
    }

    pub(crate) fn cancelled() -> BatchError {
        BatchError {
            kind: Kind::Cancelled,
        }
    }

    pub(crate) fn shed() -> BatchError {
        BatchError { kind: Kind::Shed }
    }

    /// `true` when the flush returned an error for the batch that held this item (with
    /// [`OnFailure::Bisect`](super::OnFailure::Bisect): for this item alone).
    ///
    /// See the [example on `BatchError`](BatchError#examples).
    pub fn is_flush_error(&self) -> bool {
        matches!(self.kind, Kind::Flush(_))
    }

    /// `true` when the flush returned the wrong number of outputs: a bug in the flush,
    /// reported to every item of the batch (nothing tells which output belongs to whom).
    ///
    /// See the [example on `BatchError`](BatchError#examples).
    pub fn is_output_count(&self) -> bool {
        matches!(self.kind, Kind::OutputCount { .. })
    }

    /// `true` when the flush panicked. The batcher lives on.
    ///
    /// See the [example on `BatchError`](BatchError#examples).
    pub fn is_panic(&self) -> bool {
        matches!(self.kind, Kind::Panic(_))
    }

    /// `true` when the item was cancelled: `shutdown_timeout`'s grace ran out first, or the
    /// runtime shut down under it. A flush cancelled midway may or may not have committed.
    ///
    /// See the [example on `BatchError`](BatchError#examples).
    pub fn is_cancelled(&self) -> bool {
        matches!(self.kind, Kind::Cancelled)
    }

    /// `true` when the item waited in the queue longer than the `queue_timeout`.
    ///
    /// See the [example on `BatchError`](BatchError#examples).
    pub fn is_shed(&self) -> bool {
        matches!(self.kind, Kind::Shed)
    }

    /// The flush's error, when there was one.
    ///
    /// See the [example on `BatchError`](BatchError#examples).
    pub fn flush_error(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match &self.kind {
            Kind::Flush(e) => Some(&**e),
            _ => None,
        }
    }

    /// The panic's message, when the flush panicked with a string payload.
    ///
    /// See the [example on `BatchError`](BatchError#examples).
    pub fn panic_message(&self) -> Option<&str> {
        match &self.kind {
            Kind::Panic(m) => m.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Debug for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Flush(e) => f.debug_tuple("Flush").field(&format_args!("{e}")).finish(),
            Kind::OutputCount { items, outputs } => f
                .debug_struct("OutputCount")
                .field("items", items)
                .field("outputs", outputs)
                .finish(),
            Kind::Panic(m) => f.debug_tuple("Panic").field(m).finish(),
            Kind::Cancelled => f.write_str("Cancelled"),
            Kind::Shed => f.write_str("Shed"),
        }
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Flush(e) => write!(f, "the batch's flush failed: {e}"),
            Kind::OutputCount { items, outputs } => write!(
                f,
                "the flush returned {outputs} outputs for {items} items; every item of the batch failed"
            ),
            Kind::Panic(Some(m)) => write!(f, "the batch's flush panicked: {m}"),
            Kind::Panic(None) => f.write_str("the batch's flush panicked"),
            Kind::Cancelled => f.write_str("the item was cancelled before its batch committed"),
            Kind::Shed => {
                f.write_str("the item was shed: it waited in the queue longer than the queue timeout")
            }
        }
    }
}

impl std::error::Error for BatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Flush(e) => Some(&**e as &(dyn std::error::Error + 'static)),
            _ => None,
        }
    }
}
