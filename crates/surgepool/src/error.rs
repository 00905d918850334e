//! The pools' errors. Small and hand-written; a rejected job always comes back to the caller.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// How many nested panicking payloads [`drop_payload`] drops before it leaks the rest.
const PAYLOAD_DROPS: usize = 4;

/// Drops a panic payload. The payload is a user value (`std::panic::panic_any`), and its
/// `Drop` may panic in turn: that panic is caught too, so it never reaches a worker, which
/// would take it for its own failure. Each caught panic brings a new payload, which may
/// panic again: after a few rounds the last one is leaked rather than looping forever.
pub(crate) fn drop_payload(payload: Box<dyn Any + Send>) {
    let mut payload = payload;
    for _ in 0..PAYLOAD_DROPS {
        match catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            Ok(()) => return,
            Err(next) => payload = next,
        }
    }
    std::mem::forget(payload);
}

/// Why a pool did not accept a job. The job itself comes back inside, untouched, so the
/// caller can retry it, run it inline, or answer "overloaded".
///
/// `Debug` and [`std::error::Error`] do not require `F: Debug`: futures and closures rarely
/// implement it.
///
/// # Examples
///
/// ```
/// use surgepool::{Limit, Pool, SubmitError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = Pool::builder().limit(Limit::fixed(1)).queue_capacity(0).build().unwrap();
/// let _running = pool.try_submit(std::future::pending::<()>()).unwrap();
/// match pool.try_submit(async { 42 }) {
///     Err(SubmitError::Full(fut)) => assert_eq!(fut.await, 42), // run it ourselves
///     _ => unreachable!("the only slot is taken and there is no queue"),
/// }
/// # }
/// ```
pub enum SubmitError<F> {
    /// The limit and the queue are both full.
    Full(F),
    /// The pool was closed (`close`, `shutdown` or `shutdown_timeout` began).
    Closed(F),
    /// No room came before the wait given to `submit_timeout` ran out.
    Timeout(F),
}

impl<F> SubmitError<F> {
    /// Returns the job that was not accepted.
    ///
    /// See the [example on `SubmitError`](SubmitError#examples).
    pub fn into_inner(self) -> F {
        match self {
            SubmitError::Full(f) | SubmitError::Closed(f) | SubmitError::Timeout(f) => f,
        }
    }

    /// `true` when the pool was full.
    ///
    /// See the [example on `SubmitError`](SubmitError#examples).
    pub fn is_full(&self) -> bool {
        matches!(self, SubmitError::Full(_))
    }

    /// `true` when the pool was closed.
    ///
    /// See the [example on `SubmitError`](SubmitError#examples).
    pub fn is_closed(&self) -> bool {
        matches!(self, SubmitError::Closed(_))
    }

    /// `true` when the wait for room timed out.
    ///
    /// See the [example on `SubmitError`](SubmitError#examples).
    pub fn is_timeout(&self) -> bool {
        matches!(self, SubmitError::Timeout(_))
    }

    fn describe(&self) -> &'static str {
        match self {
            SubmitError::Full(_) => "the pool is full: its limit and queue are both used up",
            SubmitError::Closed(_) => "the pool is closed and accepts no new work",
            SubmitError::Timeout(_) => "timed out waiting for room in the pool",
        }
    }
}

impl<F> fmt::Debug for SubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            SubmitError::Full(_) => "Full",
            SubmitError::Closed(_) => "Closed",
            SubmitError::Timeout(_) => "Timeout",
        };
        f.debug_tuple(name).field(&format_args!("..")).finish()
    }
}

impl<F> fmt::Display for SubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl<F> std::error::Error for SubmitError<F> {}

/// Why a shed task never ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShedReason {
    /// It waited in the queue longer than the pool's `queue_timeout`.
    QueueTimeout,
    /// Its own deadline passed while it waited.
    Deadline,
    /// The queue's delay stayed above target (CoDel) and the pool dropped it.
    QueueDelay,
}

#[derive(Debug, Clone)]
enum TaskErrorKind {
    Panic(Option<String>),
    Cancelled,
    Shed(ShedReason),
}

/// Why an accepted task produced no value.
///
/// # Examples
///
/// ```
/// use surgepool::Pool;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = Pool::builder().build().unwrap();
/// let handle = pool.try_submit(async { panic!("boom") }).unwrap();
/// let err: surgepool::TaskError = handle.await.unwrap_err();
/// assert!(err.is_panic());
/// assert_eq!(err.panic_message(), Some("boom"));
/// assert_eq!(err.to_string(), "task panicked: boom");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TaskError {
    kind: TaskErrorKind,
}

impl TaskError {
    pub(crate) fn panic(payload: Box<dyn Any + Send>) -> TaskError {
        let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
            Some((*s).to_owned())
        } else {
            payload.downcast_ref::<String>().cloned()
        };
        drop_payload(payload);
        TaskError {
            kind: TaskErrorKind::Panic(message),
        }
    }

    /// A panic whose payload is gone: the pool's own code around the task panicked.
    pub(crate) fn panic_without_payload() -> TaskError {
        TaskError {
            kind: TaskErrorKind::Panic(None),
        }
    }

    pub(crate) fn cancelled() -> TaskError {
        TaskError {
            kind: TaskErrorKind::Cancelled,
        }
    }

    pub(crate) fn shed(reason: ShedReason) -> TaskError {
        TaskError {
            kind: TaskErrorKind::Shed(reason),
        }
    }

    /// `true` when the task panicked. The pool and its workers live on.
    ///
    /// See the [example on `TaskError`](TaskError#examples).
    pub fn is_panic(&self) -> bool {
        matches!(self.kind, TaskErrorKind::Panic(_))
    }

    /// `true` when the task was cancelled: by `abort`, or by `shutdown_timeout` at its grace
    /// deadline.
    ///
    /// See the [example on `TaskHandle`](crate::TaskHandle#examples).
    pub fn is_cancelled(&self) -> bool {
        matches!(self.kind, TaskErrorKind::Cancelled)
    }

    /// `true` when the task was dropped before it ran: it waited longer than the queue
    /// timeout, its deadline passed in the queue, or queue-delay management shed it.
    ///
    /// See the example on [`PoolBuilder::queue_timeout`](crate::PoolBuilder::queue_timeout).
    pub fn is_shed(&self) -> bool {
        matches!(self.kind, TaskErrorKind::Shed(_))
    }

    /// The panic's message, when the task panicked with a string payload.
    ///
    /// See the [example on `TaskError`](TaskError#examples).
    pub fn panic_message(&self) -> Option<&str> {
        match &self.kind {
            TaskErrorKind::Panic(m) => m.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            TaskErrorKind::Panic(Some(m)) => write!(f, "task panicked: {m}"),
            TaskErrorKind::Panic(None) => f.write_str("task panicked"),
            TaskErrorKind::Cancelled => f.write_str("task was cancelled"),
            TaskErrorKind::Shed(ShedReason::QueueTimeout) => {
                f.write_str("task was shed: it waited in the queue longer than the queue timeout")
            }
            TaskErrorKind::Shed(ShedReason::Deadline) => {
                f.write_str("task was shed: its deadline passed before it could run")
            }
            TaskErrorKind::Shed(ShedReason::QueueDelay) => {
                f.write_str("task was shed: the queue delay stayed above its target")
            }
        }
    }
}

impl std::error::Error for TaskError {}

/// A pool or limit setting that cannot work, found by `build()`.
///
/// `Display` names the setting and says why.
///
/// # Examples
///
/// ```
/// use surgepool::{BlockingPool, Limit};
///
/// let err = BlockingPool::builder().limit(Limit::fixed(0)).build().unwrap_err();
/// assert_eq!(err.setting(), "limit");
/// assert!(err.to_string().contains("at least 1"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    setting: &'static str,
    reason: String,
}

impl BuildError {
    pub(crate) fn new(setting: &'static str, reason: impl Into<String>) -> BuildError {
        BuildError {
            setting,
            reason: reason.into(),
        }
    }

    /// The name of the setting that is wrong (`"limit"`, `"min_workers"`, `"runtime"`, ...).
    ///
    /// See the [example on `BuildError`](BuildError#examples).
    pub fn setting(&self) -> &'static str {
        self.setting
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.setting, self.reason)
    }
}

impl std::error::Error for BuildError {}
