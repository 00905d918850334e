//! `Consumer`: drains a queue into a local pool whose limit decides how much to fetch.
//!
//! Tasks of a running consumer (all in `run_until`):
//! - `fetch.rs`: takes the free permits, reclaims lapsed leases, then XREADGROUP COUNT k;
//! - `settle.rs`: acks, retries and dead-letters finished jobs in batches, retrying while
//!   Redis is down;
//! - `upkeep.rs`: renews the leases of live jobs and moves due retries back into the stream;
//! - `drain.rs`: stops fetching, waits out the grace period, hands back the rest.

mod builder;
mod drain;
mod fetch;
mod settle;
mod upkeep;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use surgepool::limit::Limiter;

pub use builder::ConsumerBuilder;
pub use drain::DrainReport;

use crate::error::RedisError;
use crate::job::Handler;
use crate::queue::Queue;
use crate::stats::{Counters, Snapshot};

/// Drains a [`Queue`] on any number of machines, feeding a local pool with a (by default
/// adaptive) limit.
///
/// **The fetch follows the limit**: the consumer takes the free permits first, asks Redis
/// for exactly that many jobs (`XREADGROUP COUNT k`) and gives back what it did not use. When
/// the downstream slows, the limit falls, and every machine pulls less, with no setting
/// changed.
///
/// **A job is acked only after its handler succeeded.** A failure (an `Err` or a panic) is
/// retried after an exponential backoff; after `max_deliveries` deliveries the job goes to the
/// dead-letter stream. A job whose worker died is taken over by another consumer once its
/// lease (4 × the observed p99 run time, within the floor and ceiling) lapses; live jobs renew
/// their lease, so a slow job is not stolen from a live worker. Deliveries to dead workers
/// count too, so a job that kills its worker ends in the dead-letter stream.
///
/// # Examples
///
/// ```no_run
/// use surgepool::Limit;
/// use surgepool_redis::{Consumer, Job, Queue};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let queue = Queue::connect("redis://127.0.0.1:6379", "emails").await?;
/// let consumer = Consumer::builder(queue, |job: Job| async move {
///         println!("sending {:?}", job.payload());
///         Ok::<(), std::io::Error>(())
///     })
///     .limit(Limit::adaptive())
///     .max_deliveries(5)
///     .build()?;
/// let report = consumer.run_until(shutdown_signal()).await?;
/// println!("handed back {} unfinished jobs", report.handed_back);
/// # Ok(())
/// # }
/// # async fn shutdown_signal() {} // e.g. tokio::signal::ctrl_c
/// ```
#[derive(Clone)]
pub struct Consumer {
    pub(crate) shared: Arc<Shared>,
}

/// Settings, validated by the builder.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) name: String,
    pub(crate) max_deliveries: u32,
    pub(crate) max_fetch: usize,
    pub(crate) retry_base: Duration,
    pub(crate) retry_max: Duration,
    pub(crate) lease_floor: Duration,
    pub(crate) lease_ceiling: Duration,
    pub(crate) drain_grace: Duration,
    pub(crate) block: Duration,
}

pub(crate) struct Shared {
    pub(crate) queue: Queue,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) config: Config,
    pub(crate) limiter: Limiter,
    pub(crate) counters: Counters,
    /// Every fetched job not yet settled in Redis, by entry id: the renewer renews these, and
    /// the drain hands back the ones that never finished.
    pub(crate) in_flight: Mutex<HashMap<String, InFlight>>,
    pub(crate) run_times: Mutex<upkeep::RunTimes>,
}

pub(crate) struct InFlight {
    pub(crate) job_id: String,
    pub(crate) payload: Bytes,
    pub(crate) deliveries: u32,
    /// `false` once the handler finished and the outcome waits for the settler.
    pub(crate) running: bool,
}

/// Locks, ignoring poison: the maps hold plain data, and a panicking handler never runs
/// while a lock is held.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Consumer {
    /// Starts configuring a consumer of `queue` that runs `handler` for each job.
    ///
    /// See the [example on `ConsumerBuilder`](ConsumerBuilder#examples).
    pub fn builder<H: Handler>(queue: Queue, handler: H) -> ConsumerBuilder {
        ConsumerBuilder::new(queue, Arc::new(handler))
    }

    /// This consumer's name in the consumer group.
    ///
    /// See the [example on `Consumer`](Consumer#examples).
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// The consumer's counters now; see [`Snapshot`] for the identities.
    ///
    /// See the [example on `Consumer`](Consumer#examples).
    pub fn snapshot(&self) -> Snapshot {
        let c = &self.shared.counters;
        Snapshot {
            pushed: self.shared.queue.pushed(),
            fetched: Counters::get(&c.fetched),
            acked: Counters::get(&c.acked),
            retried: Counters::get(&c.retried),
            dead: Counters::get(&c.dead),
            reclaimed: Counters::get(&c.reclaimed),
            handed_back: Counters::get(&c.handed_back),
            stale: Counters::get(&c.stale),
            in_flight: lock(&self.shared.in_flight).len() as u64,
            limit: self.shared.limiter.limit() as u64,
            lease_ms: u64::try_from(self.shared.lease().as_millis()).unwrap_or(u64::MAX),
            redis_errors: Counters::get(&c.redis_errors),
            moved: Counters::get(&c.moved),
            reads: Counters::get(&c.reads),
        }
    }

    /// Runs until `signal` completes, then drains: stops fetching, lets in-flight jobs finish
    /// within the drain grace, cancels the rest and hands them back to the stream at once, so
    /// another machine takes them without waiting out a lease.
    ///
    /// While Redis is down the consumer keeps its in-flight jobs, retries with backoff and
    /// settles them once Redis is back. The drain never blocks forever: what cannot be
    /// settled or handed back in time stays pending in Redis, where a lease reclaims it.
    ///
    /// # Errors
    ///
    /// A [`RedisError`] only when the consumer's own connection cannot be opened at start.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: dropping the future stops the consumer without a drain; its jobs
    /// stay pending in Redis and are reclaimed once their lease lapses. Use `signal`.
    ///
    /// See the [example on `Consumer`](Consumer#examples).
    pub async fn run_until<S>(&self, signal: S) -> Result<DrainReport, RedisError>
    where
        S: Future<Output = ()> + Send,
    {
        drain::run(self.shared.clone(), signal).await
    }
}

impl Shared {
    /// The current lease: 4 × p99 run time, within the floor and the ceiling.
    pub(crate) fn lease(&self) -> Duration {
        let p99 = lock(&self.run_times).p99();
        p99.saturating_mul(upkeep::LEASE_PER_P99)
            .clamp(self.config.lease_floor, self.config.lease_ceiling)
    }

    pub(crate) fn note_redis_error(&self, _err: &RedisError) {
        Counters::add(&self.counters.redis_errors, 1);
    }
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.shared.queue.name())
            .field("config", &self.shared.config)
            .field("snapshot", &self.snapshot())
            .finish_non_exhaustive()
    }
}
