//! `ConsumerBuilder`: settings, validated into a `Consumer`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use surgepool::limit::Limiter;
use surgepool::Limit;

use super::{upkeep, Config, Consumer, Shared};
use crate::error::BuildError;
use crate::job::Handler;
use crate::queue::Queue;
use crate::stats::Counters;

/// The most jobs one XREADGROUP asks for, by default (one round trip for up to this many).
const DEFAULT_MAX_FETCH: usize = 1000;
/// How long XREADGROUP waits for new entries; also the longest a stop waits for a read.
const DEFAULT_BLOCK: Duration = Duration::from_millis(100);

/// Configures a [`Consumer`].
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use surgepool::Limit;
/// use surgepool_redis::{Consumer, Job, Queue};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let queue = Queue::connect("redis://127.0.0.1:6379", "emails").await?;
/// let consumer = Consumer::builder(queue, |_job: Job| async { Ok::<(), String>(()) })
///     .limit(Limit::fixed(32))
///     .max_deliveries(3)
///     .retry_backoff(Duration::from_millis(100), Duration::from_secs(60))
///     .lease_bounds(Duration::from_secs(2), Duration::from_secs(300))
///     .drain_grace(Duration::from_secs(10))
///     .build()?;
/// # let _ = consumer;
/// # Ok(())
/// # }
/// ```
pub struct ConsumerBuilder {
    queue: Queue,
    handler: Arc<dyn Handler>,
    limit: Limit,
    config: Config,
}

impl ConsumerBuilder {
    pub(crate) fn new(queue: Queue, handler: Arc<dyn Handler>) -> ConsumerBuilder {
        ConsumerBuilder {
            queue,
            handler,
            limit: Limit::adaptive(),
            config: Config {
                name: default_name(),
                max_deliveries: 5,
                max_fetch: DEFAULT_MAX_FETCH,
                retry_base: Duration::from_secs(1),
                retry_max: Duration::from_secs(300),
                lease_floor: Duration::from_secs(5),
                lease_ceiling: Duration::from_secs(600),
                drain_grace: Duration::from_secs(30),
                block: DEFAULT_BLOCK,
            },
        }
    }

    /// The limit on jobs fetched and running at once (default: `Limit::adaptive()`). Each
    /// fetch asks for the free permits, so an adaptive limit sets the fetch size too.
    ///
    /// See the [example on `ConsumerBuilder`](ConsumerBuilder#examples).
    pub fn limit(mut self, limit: Limit) -> Self {
        self.limit = limit;
        self
    }

    /// Deliveries a job gets before it goes to the dead-letter stream (default 5, at least 1).
    ///
    /// See the [example on `ConsumerBuilder`](ConsumerBuilder#examples).
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.config.max_deliveries = n;
        self
    }

    /// The most jobs one fetch asks for (default 1000, at least 1).
    ///
    /// See the [example on `ConsumerBuilder`](ConsumerBuilder#examples).
    pub fn max_fetch(mut self, n: usize) -> Self {
        self.config.max_fetch = n;
        self
    }

    /// Retry delay after the n-th failed delivery: `base × 2^(n-1)`, at most `max`
    /// (default 1 s and 5 min).
    ///
    /// See the [example on `ConsumerBuilder`](ConsumerBuilder#examples).
    pub fn retry_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.config.retry_base = base;
        self.config.retry_max = max;
        self
    }

    /// The lease is 4 × the observed p99 run time, kept within `[floor, ceiling]` (default
    /// 5 s and 10 min). Live jobs renew every `floor / 4`, so the floor is also how quickly a
    /// dead consumer's jobs can move, and every consumer of a queue should use the same one.
    ///
    /// See the [example on `ConsumerBuilder`](ConsumerBuilder#examples).
    pub fn lease_bounds(mut self, floor: Duration, ceiling: Duration) -> Self {
        self.config.lease_floor = floor;
        self.config.lease_ceiling = ceiling;
        self
    }

    /// How long the drain lets in-flight jobs finish before it cancels and hands them back
    /// (default 30 s).
    ///
    /// See the [example on `ConsumerBuilder`](ConsumerBuilder#examples).
    pub fn drain_grace(mut self, grace: Duration) -> Self {
        self.config.drain_grace = grace;
        self
    }

    /// The consumer's name in the group (default: host, process id and a counter). A
    /// restarted process should take a new name; the old one's jobs are reclaimed by lease.
    ///
    /// See the [example on `ConsumerBuilder`](ConsumerBuilder#examples).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Checks the settings and builds the consumer. Needs no runtime.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the setting that cannot work.
    ///
    /// See the [example on `ConsumerBuilder`](ConsumerBuilder#examples).
    pub fn build(self) -> Result<Consumer, BuildError> {
        let c = &self.config;
        if c.max_deliveries == 0 {
            return Err(BuildError::new("max_deliveries", "must be at least 1"));
        }
        if c.max_fetch == 0 {
            return Err(BuildError::new("max_fetch", "must be at least 1"));
        }
        if c.lease_floor < Duration::from_millis(30) || c.lease_floor > c.lease_ceiling {
            return Err(BuildError::new(
                "lease_bounds",
                "the floor must be at least 30 ms (renewals run every floor / 4) and at most the ceiling",
            ));
        }
        if c.lease_ceiling > Duration::from_secs(86_400 * 365) {
            return Err(BuildError::new(
                "lease_bounds",
                "the ceiling must be at most a year",
            ));
        }
        if c.retry_base > c.retry_max || c.retry_max > Duration::from_secs(86_400 * 365) {
            return Err(BuildError::new(
                "retry_backoff",
                "the base must be at most the max, and the max at most a year",
            ));
        }
        if c.drain_grace > Duration::from_secs(86_400 * 365) {
            return Err(BuildError::new("drain_grace", "must be at most a year"));
        }
        if c.name.is_empty() {
            return Err(BuildError::new("name", "must not be empty"));
        }
        let limiter =
            Limiter::new(self.limit).map_err(|e| BuildError::new("limit", e.to_string()))?;
        Ok(Consumer {
            shared: Arc::new(Shared {
                queue: self.queue,
                handler: self.handler,
                config: self.config,
                limiter,
                counters: Counters::default(),
                in_flight: Mutex::new(HashMap::new()),
                run_times: Mutex::new(upkeep::RunTimes::default()),
            }),
        })
    }
}

fn default_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".to_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{host}-{}-{nanos:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl fmt::Debug for ConsumerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerBuilder")
            .field("queue", &self.queue.name())
            .field("limit", &self.limit)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
