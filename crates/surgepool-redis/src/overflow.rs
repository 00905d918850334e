//! `Overflow`: the producer's fast path (the local pool) plus its overflow (the stream).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use surgepool::{Pool, SubmitError, TaskHandle};

use crate::error::{OverflowError, PushError};
use crate::job::{Handler, Job, JobError, Source};
use crate::queue::Queue;

/// After Redis failed, how long `WhenUnavailable::Shed` sheds without trying Redis again.
const SHED_COOLDOWN: Duration = Duration::from_secs(1);

/// What [`Overflow`] does with a job when the pool is full and Redis is unavailable. Set
/// with [`Overflow::when_unavailable`]; see the [example on `Overflow`](Overflow#examples).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenUnavailable {
    /// Try Redis for every job (each try bounded by the queue's operation timeout) and
    /// return [`OverflowError::Unavailable`] with the payload.
    #[default]
    Error,
    /// After a failure, shed at once for a second ([`OverflowError::Shed`]) instead of
    /// waiting on Redis for each job, then try again.
    Shed,
}

/// Which path a submitted job took.
///
/// See the [example on `Overflow`](Overflow#examples).
#[derive(Debug)]
pub enum Routed {
    /// It runs in the local pool; the handle resolves with the handler's result.
    Local(TaskHandle<Result<(), JobError>>),
    /// The pool was full: it is in the stream (and on disk, per the Redis persistence
    /// settings) under this job id, for any consumer to run.
    Queued(String),
}

/// Runs jobs in the local pool while it has room, and pushes them to the stream when the
/// pool would say `Full`, so its data is in Redis before `submit` returns. Both paths use the
/// same handler. Past the stream's bound ([`QueueBuilder::max_len`](crate::QueueBuilder::max_len))
/// it says `Full`: shed, not an unbounded backlog.
///
/// Local runs are not retried: their result comes back in the [`Routed::Local`] handle.
///
/// # Examples
///
/// ```no_run
/// use surgepool::{Limit, Pool};
/// use surgepool_redis::{Job, Overflow, Queue, Routed, WhenUnavailable};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = Pool::builder().limit(Limit::adaptive()).queue_capacity(0).build()?;
/// let queue = Queue::builder("redis://127.0.0.1:6379", "emails").max_len(100_000).connect().await?;
/// let handler = |job: Job| async move { println!("{:?}", job.payload()); Ok::<(), String>(()) };
/// let overflow = Overflow::new(pool, queue, handler)
///     .when_unavailable(WhenUnavailable::Shed); // Redis down: shed at once, retry in 1 s
/// match overflow.submit(&b"to: ada@example.com"[..]).await {
///     Ok(Routed::Local(handle)) => { let _ = handle.await; }
///     Ok(Routed::Queued(id)) => println!("overflowed as {id}"),
///     Err(e) => println!("shed: {e}"),
/// }
/// let stats = overflow.stats();
/// assert_eq!(stats.submitted(), stats.local + stats.queued + stats.full + stats.unavailable);
/// println!("local: {} running; stream: {}", overflow.pool().snapshot().running, overflow.queue().name());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Overflow {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    queue: Queue,
    handler: Arc<dyn Handler>,
    when_unavailable: WhenUnavailable,
    last_failure: Mutex<Option<Instant>>,
    local: AtomicU64,
    queued: AtomicU64,
    full: AtomicU64,
    unavailable: AtomicU64,
    next_local_id: AtomicU64,
}

/// Counters of an [`Overflow`].
///
/// # Examples
///
/// ```
/// let s = surgepool_redis::OverflowStats::default();
/// assert_eq!(s.submitted(), s.local + s.queued + s.full + s.unavailable);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OverflowStats {
    /// Jobs run in the local pool.
    pub local: u64,
    /// Jobs pushed to the stream.
    pub queued: u64,
    /// Jobs shed because the stream was at its bound.
    pub full: u64,
    /// Jobs refused because Redis was unavailable (shed or error), or the pool was closed.
    pub unavailable: u64,
}

impl OverflowStats {
    /// Every job submitted.
    ///
    /// See the [example on `OverflowStats`](OverflowStats#examples).
    pub fn submitted(&self) -> u64 {
        self.local + self.queued + self.full + self.unavailable
    }
}

impl Overflow {
    /// Local pool first, `queue` when the pool is full, `handler` for local runs (give the
    /// consumers the same one).
    ///
    /// See the [example on `Overflow`](Overflow#examples).
    pub fn new<H: Handler>(pool: Pool, queue: Queue, handler: H) -> Overflow {
        Overflow {
            inner: Arc::new(Inner {
                pool,
                queue,
                handler: Arc::new(handler),
                when_unavailable: WhenUnavailable::Error,
                last_failure: Mutex::new(None),
                local: AtomicU64::new(0),
                queued: AtomicU64::new(0),
                full: AtomicU64::new(0),
                unavailable: AtomicU64::new(0),
                next_local_id: AtomicU64::new(0),
            }),
        }
    }

    /// What to do when the pool is full and Redis is unavailable (default: report an error).
    /// Call before cloning.
    ///
    /// See the [example on `Overflow`](Overflow#examples).
    pub fn when_unavailable(mut self, mode: WhenUnavailable) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.when_unavailable = mode;
        }
        self
    }

    /// Runs the job locally if the pool has room now, else pushes it to the stream. Never
    /// waits for the pool; waits for Redis at most the queue's operation timeout.
    ///
    /// # Errors
    ///
    /// The payload comes back: [`OverflowError::Full`] past the stream's bound,
    /// [`OverflowError::Unavailable`] / [`OverflowError::Shed`] when Redis is down,
    /// [`OverflowError::Closed`] when the pool is closed.
    ///
    /// See the [example on `Overflow`](Overflow#examples).
    pub async fn submit(&self, payload: impl Into<Bytes>) -> Result<Routed, OverflowError> {
        let inner = &self.inner;
        let payload = payload.into();
        let job = Job {
            id: format!(
                "local-{}",
                inner.next_local_id.fetch_add(1, Ordering::Relaxed)
            ),
            payload: payload.clone(),
            deliveries: 1,
            source: Source::Local,
        };
        let handler = inner.handler.clone();
        // Lazy: the handler is only called once the pool admitted the job.
        match inner
            .pool
            .try_submit(async move { handler.call(job).await })
        {
            Ok(handle) => {
                inner.local.fetch_add(1, Ordering::Relaxed);
                return Ok(Routed::Local(handle));
            }
            Err(SubmitError::Full(_)) => {}
            Err(_) => {
                inner.unavailable.fetch_add(1, Ordering::Relaxed);
                return Err(OverflowError::Closed(payload));
            }
        }
        if inner.when_unavailable == WhenUnavailable::Shed {
            let last = *inner
                .last_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < SHED_COOLDOWN) {
                inner.unavailable.fetch_add(1, Ordering::Relaxed);
                return Err(OverflowError::Shed(payload));
            }
        }
        match inner.queue.push(payload).await {
            Ok(id) => {
                inner.queued.fetch_add(1, Ordering::Relaxed);
                Ok(Routed::Queued(id))
            }
            Err(PushError::Full(p)) => {
                inner.full.fetch_add(1, Ordering::Relaxed);
                Err(OverflowError::Full(p))
            }
            Err(PushError::Unavailable(p, e)) => {
                inner.unavailable.fetch_add(1, Ordering::Relaxed);
                *inner
                    .last_failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
                Err(match inner.when_unavailable {
                    WhenUnavailable::Error => OverflowError::Unavailable(p, e),
                    WhenUnavailable::Shed => OverflowError::Shed(p),
                })
            }
        }
    }

    /// The counters now.
    ///
    /// See the [example on `OverflowStats`](OverflowStats#examples).
    pub fn stats(&self) -> OverflowStats {
        let i = &self.inner;
        OverflowStats {
            local: i.local.load(Ordering::Relaxed),
            queued: i.queued.load(Ordering::Relaxed),
            full: i.full.load(Ordering::Relaxed),
            unavailable: i.unavailable.load(Ordering::Relaxed),
        }
    }

    /// The local pool.
    ///
    /// See the [example on `Overflow`](Overflow#examples).
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The queue.
    ///
    /// See the [example on `Overflow`](Overflow#examples).
    pub fn queue(&self) -> &Queue {
        &self.inner.queue
    }
}

impl fmt::Debug for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Overflow")
            .field("queue", &self.inner.queue.name())
            .field("when_unavailable", &self.inner.when_unavailable)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
