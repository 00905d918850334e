//! Hand-written errors; the ones for a push hand the rejected payload back.

use std::fmt;

use bytes::Bytes;

/// Redis could not be reached or answered with an error, or the answer did not come within
/// the queue's operation timeout (so no call blocks forever while Redis is down).
///
/// Returned by [`Queue::connect`](crate::Queue::connect), [`Queue::fleet`](crate::Queue::fleet) and [`Queue::dead_letters`](crate::Queue::dead_letters) (see the [example on `Queue`](crate::Queue#examples)), and carried by the `Unavailable` variants of [`PushError`] (see [its example](PushError#examples)), [`PushManyError`] and [`OverflowError`].
#[derive(Debug)]
pub struct RedisError {
    pub(crate) what: &'static str,
    pub(crate) detail: String,
}

impl RedisError {
    pub(crate) fn new(what: &'static str, err: impl fmt::Display) -> RedisError {
        RedisError {
            what,
            detail: err.to_string(),
        }
    }

    pub(crate) fn timeout(what: &'static str) -> RedisError {
        RedisError {
            what,
            detail: "no answer within the operation timeout".to_owned(),
        }
    }
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis {}: {}", self.what, self.detail)
    }
}

impl std::error::Error for RedisError {}

/// Why a push did not add the job. The payload comes back.
///
/// # Examples
///
/// ```
/// use surgepool_redis::PushError;
///
/// let err = PushError::Full(bytes::Bytes::from_static(b"job"));
/// assert!(err.is_full());
/// assert_eq!(&err.into_inner()[..], b"job");
/// ```
#[derive(Debug)]
pub enum PushError {
    /// The stream is at its bound ([`QueueBuilder::max_len`](crate::QueueBuilder::max_len)).
    Full(Bytes),
    /// Redis is down, restarting or too slow; the job may or may not have been added only if
    /// the failure came after the command was sent (see the crate's README on guarantees).
    Unavailable(Bytes, RedisError),
}

impl PushError {
    /// The payload that was not pushed.
    ///
    /// See the [example on `PushError`](PushError#examples).
    pub fn into_inner(self) -> Bytes {
        match self {
            PushError::Full(p) | PushError::Unavailable(p, _) => p,
        }
    }

    /// `true` when the stream was at its bound.
    ///
    /// See the [example on `PushError`](PushError#examples).
    pub fn is_full(&self) -> bool {
        matches!(self, PushError::Full(_))
    }
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full(_) => f.write_str("the stream is at its bound: job not pushed"),
            PushError::Unavailable(_, e) => write!(f, "job not pushed: {e}"),
        }
    }
}

impl std::error::Error for PushError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PushError::Unavailable(_, e) => Some(e),
            PushError::Full(_) => None,
        }
    }
}

/// Why a push of many jobs did not add them. The payloads come back, in order.
///
/// # Examples
///
/// ```
/// use surgepool_redis::PushManyError;
///
/// let err = PushManyError::Full(vec![bytes::Bytes::from_static(b"a")]);
/// assert_eq!(err.into_inner().len(), 1);
/// ```
#[derive(Debug)]
pub enum PushManyError {
    /// The batch would take the stream past its bound; none was added.
    Full(Vec<Bytes>),
    /// Redis is down, restarting or too slow.
    Unavailable(Vec<Bytes>, RedisError),
}

impl PushManyError {
    /// The payloads that were not (or not surely) pushed.
    ///
    /// See the [example on `PushManyError`](PushManyError#examples).
    pub fn into_inner(self) -> Vec<Bytes> {
        match self {
            PushManyError::Full(p) | PushManyError::Unavailable(p, _) => p,
        }
    }
}

impl fmt::Display for PushManyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushManyError::Full(p) => {
                write!(f, "the stream is at its bound: {} jobs not pushed", p.len())
            }
            PushManyError::Unavailable(p, e) => write!(f, "{} jobs not pushed: {e}", p.len()),
        }
    }
}

impl std::error::Error for PushManyError {}

/// Why [`Overflow::submit`](crate::Overflow::submit) took neither path. The payload comes back.
///
/// # Examples
///
/// ```
/// use surgepool_redis::OverflowError;
///
/// let err = OverflowError::Full(bytes::Bytes::from_static(b"job"));
/// assert!(err.is_full());
/// assert_eq!(&err.into_inner()[..], b"job");
/// ```
#[derive(Debug)]
pub enum OverflowError {
    /// The local pool is full and the stream is at its bound: shed.
    Full(Bytes),
    /// The local pool is full and Redis is unavailable (with
    /// [`WhenUnavailable::Error`](crate::WhenUnavailable::Error)).
    Unavailable(Bytes, RedisError),
    /// The local pool is full and Redis was found unavailable recently, so the job was shed
    /// at once (with [`WhenUnavailable::Shed`](crate::WhenUnavailable::Shed)).
    Shed(Bytes),
    /// The local pool is closed.
    Closed(Bytes),
}

impl OverflowError {
    /// The payload that was not taken.
    ///
    /// See the [example on `OverflowError`](OverflowError#examples).
    pub fn into_inner(self) -> Bytes {
        match self {
            OverflowError::Full(p)
            | OverflowError::Unavailable(p, _)
            | OverflowError::Shed(p)
            | OverflowError::Closed(p) => p,
        }
    }

    /// `true` when both paths were full.
    ///
    /// See the [example on `OverflowError`](OverflowError#examples).
    pub fn is_full(&self) -> bool {
        matches!(self, OverflowError::Full(_))
    }
}

impl fmt::Display for OverflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OverflowError::Full(_) => {
                f.write_str("the local pool is full and the stream is at its bound")
            }
            OverflowError::Unavailable(_, e) => write!(f, "the local pool is full and {e}"),
            OverflowError::Shed(_) => {
                f.write_str("the local pool is full and redis is unavailable: job shed")
            }
            OverflowError::Closed(_) => f.write_str("the local pool is closed"),
        }
    }
}

impl std::error::Error for OverflowError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OverflowError::Unavailable(_, e) => Some(e),
            _ => None,
        }
    }
}

/// A consumer setting that cannot work. `Display` says which and why.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let queue: surgepool_redis::Queue = return;
/// use surgepool_redis::Consumer;
///
/// let err = Consumer::builder(queue, |_job| async { Ok::<(), String>(()) })
///     .max_deliveries(0)
///     .build()
///     .unwrap_err();
/// assert!(err.to_string().contains("max_deliveries"));
/// # }
/// ```
#[derive(Debug)]
pub struct BuildError {
    pub(crate) setting: &'static str,
    pub(crate) reason: String,
}

impl BuildError {
    pub(crate) fn new(setting: &'static str, reason: impl Into<String>) -> BuildError {
        BuildError {
            setting,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.setting, self.reason)
    }
}

impl std::error::Error for BuildError {}
