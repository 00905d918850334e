//! [`BlockingPoolBuilder`]: the blocking pool's settings, validated by `build`.

use std::fmt;
use std::sync::Arc as StdArc;
use std::time::Duration;

use super::inner::{Inner, Settings};
use super::{BlockingPool, Owner};
use crate::clock::Clock;
use crate::error::{BuildError, TaskError};
use crate::limit::{Limit, Limiter};
use crate::pool::{
    validate_limit, PanicHook, CODEL_INTERVAL, CODEL_TARGET, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_QUEUE_CAPACITY,
};
use crate::queue::{Codel, JobQueue};
use crate::sync::Arc;

/// Builds a [`BlockingPool`]. Every setting is checked by
/// [`build`](BlockingPoolBuilder::build); no setter panics.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use surgepool::{BlockingPool, Limit};
///
/// let pool = BlockingPool::builder()
///     .limit(Limit::fixed(4))       // default: the machine's available parallelism
///     .queue_capacity(1024)
///     .idle_timeout(Duration::from_secs(10))
///     .thread_name("image-resize")
///     .build()?;
/// # drop(pool);
/// # Ok::<(), surgepool::BuildError>(())
/// ```
#[derive(Clone)]
pub struct BlockingPoolBuilder {
    limit: Option<Limit>,
    queue_capacity: usize,
    min_workers: usize,
    idle_timeout: Duration,
    queue_timeout: Option<Duration>,
    codel: Option<(Duration, Duration)>,
    on_panic: Option<PanicHook>,
    thread_name: String,
    stack_size: Option<usize>,
    name: Option<StdArc<str>>,
}

/// The name of a pool built without [`BlockingPoolBuilder::name`].
const DEFAULT_NAME: &str = "blocking";

impl BlockingPoolBuilder {
    pub(crate) fn new() -> Self {
        BlockingPoolBuilder {
            limit: None,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            min_workers: 0,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            queue_timeout: None,
            codel: None,
            on_panic: None,
            thread_name: "surgepool-blocking".to_owned(),
            stack_size: None,
            name: None,
        }
    }

    /// A name for this pool: the `pool` label of its metrics (feature `metrics`) and the
    /// `pool` field of its `tracing` events. Default: `"blocking"`. (The threads' names are
    /// [`thread_name`](Self::thread_name).)
    ///
    /// ```
    /// let pool = surgepool::BlockingPool::builder().name("resize").build()?;
    /// assert_eq!(pool.name(), "resize");
    /// # Ok::<(), surgepool::BuildError>(())
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(StdArc::from(name.into()));
        self
    }

    /// How many closures may run at once. Default: `Limit::fixed(n)` with `n` the
    /// machine's available parallelism. `Limit::adaptive()` grows threads for blocking
    /// I/O and stays near the core count for CPU work.
    ///
    /// See the [example on `BlockingPoolBuilder`](BlockingPoolBuilder#examples).
    pub fn limit(mut self, limit: Limit) -> Self {
        self.limit = Some(limit);
        self
    }

    /// How many closures may wait. `0`: admit only while under the limit. Default: 1024.
    ///
    /// See the [example on `BlockingPoolBuilder`](BlockingPoolBuilder#examples).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Threads kept alive even when idle (started at `build`). Default: 0. Must not be
    /// above a fixed limit, nor above 65,536 for any limit.
    ///
    /// See the [example on `BlockingPoolBuilder`](BlockingPoolBuilder#examples).
    pub fn min_workers(mut self, n: usize) -> Self {
        self.min_workers = n;
        self
    }

    /// How long an idle thread above `min_workers` lives. Default: 10 s.
    ///
    /// See the [example on `BlockingPoolBuilder`](BlockingPoolBuilder#examples).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sheds a closure that waited in the queue longer than `timeout`.
    ///
    /// See the [example on `BlockingPoolBuilder`](BlockingPoolBuilder#examples).
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.queue_timeout = Some(timeout);
        self
    }

    /// CoDel queue management (RFC 8289) with a 5 ms target over 100 ms intervals.
    ///
    /// See the [example on `BlockingPoolBuilder`](BlockingPoolBuilder#examples).
    pub fn codel(mut self) -> Self {
        self.codel = Some((CODEL_TARGET, CODEL_INTERVAL));
        self
    }

    /// Calls `hook` with each closure's panic (after it was caught).
    ///
    /// See the [example on `BlockingPoolBuilder`](BlockingPoolBuilder#examples).
    pub fn on_panic<H>(mut self, hook: H) -> Self
    where
        H: Fn(&TaskError) + Send + Sync + 'static,
    {
        self.on_panic = Some(StdArc::new(hook));
        self
    }

    /// The prefix of the threads' names (`<name>-<n>`).
    ///
    /// See the [example on `BlockingPoolBuilder`](BlockingPoolBuilder#examples).
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = name.into();
        self
    }

    /// The threads' stack size in bytes (default: the standard library's).
    ///
    /// See the [example on `BlockingPoolBuilder`](BlockingPoolBuilder#examples).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Builds the pool and starts `min_workers` threads.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] when a setting cannot work: a fixed limit of 0, `min_workers`
    /// above the limit, a thread name with a NUL byte.
    ///
    /// See the [example on `BlockingPoolBuilder`](BlockingPoolBuilder#examples).
    pub fn build(self) -> Result<BlockingPool, BuildError> {
        let limit = self.limit.unwrap_or_else(|| {
            Limit::fixed(std::thread::available_parallelism().map_or(1, usize::from))
        });
        validate_limit(&limit, self.min_workers)?;
        if self.thread_name.contains('\0') {
            return Err(BuildError::new(
                "thread_name",
                "a thread name cannot contain a NUL byte",
            ));
        }
        let limiter = Limiter::new(limit)?;
        let codel = self.codel.map(|(t, i)| Codel::new(t, i));
        let clock = Clock::new();
        let queue = JobQueue::new(self.queue_capacity, self.queue_timeout, codel, clock);
        let name = self.name.unwrap_or_else(|| StdArc::from(DEFAULT_NAME));
        let settings = Settings {
            clock,
            min_workers: self.min_workers,
            idle_timeout: self.idle_timeout,
            on_panic: crate::trace::with_panic_event(self.on_panic, &name),
            name: name.clone(),
            thread_name: self.thread_name,
            stack_size: self.stack_size,
        };
        Ok(BlockingPool {
            owner: Arc::new(Owner {
                inner: Inner::new(limiter, settings, queue),
                name,
            }),
        })
    }
}

impl Default for BlockingPoolBuilder {
    fn default() -> Self {
        BlockingPoolBuilder::new()
    }
}

impl fmt::Debug for BlockingPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingPoolBuilder")
            .field("name", &self.name)
            .field("limit", &self.limit)
            .field("queue_capacity", &self.queue_capacity)
            .field("min_workers", &self.min_workers)
            .field("idle_timeout", &self.idle_timeout)
            .field("queue_timeout", &self.queue_timeout)
            .field("codel", &self.codel)
            .field("on_panic", &self.on_panic.is_some())
            .field("thread_name", &self.thread_name)
            .finish_non_exhaustive()
    }
}
