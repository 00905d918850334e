//! What a handler receives, and the handler trait both paths share.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

/// Where a job came from: the producer's own pool, or the stream.
///
/// See the [example on `Job`](Job#examples).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Run by [`Overflow`](crate::Overflow) in the producer's local pool; never in Redis.
    Local,
    /// Read from the stream by a [`Consumer`](crate::Consumer).
    Stream,
}

/// One job, as a handler sees it.
///
/// # Examples
///
/// ```
/// use surgepool_redis::{Job, Source};
///
/// let job = Job::new("1700000000000-0", &b"hello"[..]);
/// assert_eq!(job.deliveries(), 1);
/// assert_eq!(job.source(), Source::Stream);
/// assert_eq!(&job.payload()[..], b"hello");
/// ```
#[derive(Debug, Clone)]
pub struct Job {
    pub(crate) id: String,
    pub(crate) payload: Bytes,
    pub(crate) deliveries: u32,
    pub(crate) source: Source,
}

impl Job {
    /// A job from the stream with this id and payload, on its first delivery (for tests of
    /// handlers).
    ///
    /// See the [example on `Job`](Job#examples).
    pub fn new(id: impl Into<String>, payload: impl Into<Bytes>) -> Job {
        Job {
            id: id.into(),
            payload: payload.into(),
            deliveries: 1,
            source: Source::Stream,
        }
    }

    /// The job's id: the stream entry id it was first pushed as. It stays the same across
    /// retries, reclaims and hand-backs, so a handler can deduplicate on it. Local jobs get
    /// `local-N`.
    ///
    /// See the [example on `Job`](Job#examples).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The payload, as pushed.
    ///
    /// See the [example on `Job`](Job#examples).
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Which delivery this is, from 1. Counts failed runs and runs whose worker died.
    ///
    /// See the [example on `Job`](Job#examples).
    pub fn deliveries(&self) -> u32 {
        self.deliveries
    }

    /// Where the job came from.
    ///
    /// See the [example on `Job`](Job#examples).
    pub fn source(&self) -> Source {
        self.source
    }

    /// The payload decoded from JSON (pushed with [`Queue::push_json`](crate::Queue::push_json)).
    ///
    /// # Errors
    ///
    /// The decoding error when the payload is not this type's JSON.
    ///
    /// See the [example on `Job`](Job#examples).
    #[cfg(feature = "serde")]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }
}

/// A failed run, as the handler reported it (or the panic's message).
///
/// # Examples
///
/// ```
/// use surgepool_redis::JobError;
///
/// let err = JobError::new("smtp 451");
/// assert_eq!(err.to_string(), "smtp 451");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError(pub(crate) String);

impl JobError {
    /// An error with this message.
    ///
    /// See the [example on `JobError`](JobError#examples).
    pub fn new(message: impl Into<String>) -> JobError {
        JobError(message.into())
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JobError {}

/// The future a [`Handler`] returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send + 'static>>;

/// Runs one job. Implemented for every `Fn(Job) -> impl Future<Output = Result<(), E>>` with
/// `E: Display`, so a closure or an `async fn` is a handler.
///
/// `Ok` acks the job; `Err` (or a panic) schedules a retry with backoff, and after
/// `max_deliveries` sends it to the dead-letter stream.
///
/// # Examples
///
/// ```
/// use surgepool_redis::{Handler, Job};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let handler = |job: Job| async move {
///     if job.payload().is_empty() {
///         return Err("empty job");
///     }
///     Ok(())
/// };
/// assert!(handler.call(Job::new("1-0", &b"x"[..])).await.is_ok());
/// assert!(handler.call(Job::new("1-1", &b""[..])).await.is_err());
/// # }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Runs the job.
    fn call(&self, job: Job) -> HandlerFuture;
}

impl<F, Fut, E> Handler for F
where
    F: Fn(Job) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display,
{
    fn call(&self, job: Job) -> HandlerFuture {
        let fut = self(job);
        Box::pin(async move { fut.await.map_err(|e| JobError(e.to_string())) })
    }
}
