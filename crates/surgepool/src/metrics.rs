//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`):
//! point any recorder at them (Prometheus with `metrics-exporter-prometheus`, StatsD, ...).
//!
//! Nothing is recorded on the pools' hot path. A [`Publisher`] reads each pool's
//! [`Snapshot`] (and the latency counts behind it) when you call
//! [`publish`](Publisher::publish), or every interval once [`spawn`](Publisher::spawn)ed, and
//! sets the metrics below from it: counters are set to the snapshot's totals
//! (`Counter::absolute`), histograms receive the latencies recorded since the last publish,
//! at the pool's histogram resolution (2 significant digits). A pool's cost per task is the
//! same with the feature on or off.
//!
//! | metric | kind | labels | what |
//! |---|---|---|---|
//! | `surgepool_tasks_submitted_total` | counter | `pool` | every submit, accepted or not |
//! | `surgepool_tasks_total` | counter | `pool`, `outcome` | `accepted`, `completed`, `panicked`, `cancelled`, `shed`, `rejected` |
//! | `surgepool_shed_total` | counter | `pool`, `reason` | `full` (refused at the door: limit and queue full) and `queue` (dropped from the queue: queue timeout, deadline, CoDel) |
//! | `surgepool_limit` | gauge | `pool` | the concurrency limit now |
//! | `surgepool_in_flight` | gauge | `pool` | tasks running now |
//! | `surgepool_queued` | gauge | `pool` | tasks waiting now |
//! | `surgepool_workers` | gauge | `pool` | workers (tasks or threads) alive now |
//! | `surgepool_queue_wait_seconds` | histogram | `pool` | time from submit to start |
//! | `surgepool_run_seconds` | histogram | `pool` | time from start to end |
//! | `surgepool_end_to_end_seconds` | histogram | `pool` | queue wait + run time |
//! | `surgepool_limit` / `surgepool_in_flight` | gauge | `pool` | for a bare [`Limiter`] too |
//! | `surgepool_limiter_samples_total` | counter | `pool`, `outcome` | a bare limiter's `succeeded`, `dropped`, `ignored` samples |
//! | `surgepool_batch_items_total` | counter | `pool`, `outcome` | a batcher's items: `accepted`, `committed`, `failed`, `shed`, `cancelled`, `rejected` |
//! | `surgepool_batch_flushes_total` | counter | `pool`, `outcome` | a batcher's flushes: `all`, `failed`, `bisection` |
//! | `surgepool_batch_size_mean` | gauge | `pool` | a batcher's mean batch size |
//!
//! The `pool` label is the name given with the builders' `name` (`"pool"` and `"blocking"`
//! by default; a batcher's and a bare limiter's are given to the publisher). Other crates
//! (the tower layer) add their own metrics through [`Publisher::with`].
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use surgepool::{metrics::Publisher, Pool};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), surgepool::BuildError> {
//! // With a recorder installed (e.g. metrics_exporter_prometheus::PrometheusBuilder), the
//! // publisher sets the metrics every second until it is dropped.
//! let pool = Pool::builder().name("checkout").build()?;
//! let publisher = Publisher::new().pool(&pool).spawn(Duration::from_secs(1));
//! pool.try_submit(async { 1 + 1 }).ok();
//! drop(publisher); // stops publishing
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::{Arc, Once};
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::limit::Limiter;
use crate::stats::Latencies;
use crate::{BlockingPool, Pool, Snapshot};

type ReadPool = Box<dyn Fn() -> (Snapshot, Latencies) + Send + Sync>;

/// One thing a [`Publisher`] publishes.
pub(crate) struct Source {
    name: Arc<str>,
    kind: Kind,
}

enum Kind {
    Pool {
        read: ReadPool,
        /// The latency counts at the last publish: the next publish records the difference.
        before: Option<Latencies>,
    },
    Limiter(Limiter),
    Custom(Box<dyn FnMut() + Send>),
}

impl Source {
    pub(crate) fn pool(
        name: Arc<str>,
        read: impl Fn() -> (Snapshot, Latencies) + Send + Sync + 'static,
    ) -> Source {
        Source {
            name,
            kind: Kind::Pool {
                read: Box::new(read),
                before: None,
            },
        }
    }

    fn publish(&mut self) {
        let name = &self.name;
        match &mut self.kind {
            Kind::Pool { read, before } => {
                let (snapshot, latencies) = read();
                publish_snapshot(name, &snapshot);
                publish_latencies(name, &latencies, before.as_ref());
                *before = Some(latencies);
            }
            Kind::Limiter(limiter) => publish_limiter(name, limiter),
            Kind::Custom(publish) => publish(),
        }
    }
}

/// Publishes pools' and limiters' figures to the installed `metrics` recorder (see the
/// [module docs](self) for the metric names).
///
/// Holds no pool open: a pool whose last handle is dropped closes as usual, and its
/// metrics keep their last values.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use surgepool::{metrics::Publisher, Pool};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), surgepool::BuildError> {
/// // Install a recorder first (e.g. metrics-exporter-prometheus); without one, the
/// // metrics go nowhere.
/// let pool = Pool::builder().name("emails").build()?;
///
/// // Either on a timer, until the task is dropped ...
/// let task = Publisher::new().pool(&pool).spawn(Duration::from_secs(1));
/// drop(task);
///
/// // ... or on demand, for example at each scrape of `/metrics`.
/// let mut publisher = Publisher::new().pool(&pool);
/// publisher.publish();
/// # Ok(())
/// # }
/// ```
#[derive(Default)]
pub struct Publisher {
    sources: Vec<Source>,
}

impl Publisher {
    /// A publisher with nothing to publish yet.
    ///
    /// ```
    /// let publisher = surgepool::metrics::Publisher::new();
    /// # drop(publisher);
    /// ```
    pub fn new() -> Publisher {
        Publisher::default()
    }

    /// Publishes `pool`'s snapshot under its name ([`PoolBuilder::name`](crate::PoolBuilder::name)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), surgepool::BuildError> {
    /// let pool = surgepool::Pool::builder().name("emails").build()?;
    /// let mut publisher = surgepool::metrics::Publisher::new().pool(&pool);
    /// publisher.publish(); // surgepool_limit{pool="emails"} and the rest, now
    /// # Ok(())
    /// # }
    /// ```
    pub fn pool(mut self, pool: &Pool) -> Publisher {
        self.sources.push(pool.metrics_source());
        self
    }

    /// Publishes `pool`'s snapshot under its name
    /// ([`BlockingPoolBuilder::name`](crate::BlockingPoolBuilder::name)).
    ///
    /// ```
    /// let pool = surgepool::BlockingPool::builder().name("resize").build()?;
    /// let mut publisher = surgepool::metrics::Publisher::new().blocking_pool(&pool);
    /// publisher.publish();
    /// # Ok::<(), surgepool::BuildError>(())
    /// ```
    pub fn blocking_pool(mut self, pool: &BlockingPool) -> Publisher {
        self.sources.push(pool.metrics_source());
        self
    }

    /// Publishes a bare [`Limiter`]'s limit, in-flight count and samples, labelled `name`.
    ///
    /// ```
    /// use surgepool::{limit::Limiter, Limit};
    /// let limiter = Limiter::new(Limit::fixed(8))?;
    /// let mut publisher = surgepool::metrics::Publisher::new().limiter("upstream", &limiter);
    /// publisher.publish();
    /// # Ok::<(), surgepool::BuildError>(())
    /// ```
    pub fn limiter(mut self, name: impl Into<String>, limiter: &Limiter) -> Publisher {
        self.sources.push(Source {
            name: Arc::from(name.into()),
            kind: Kind::Limiter(limiter.clone()),
        });
        self
    }

    /// Publishes a [`Batcher`](crate::batch::Batcher)'s snapshot, labelled `name`:
    /// `surgepool_batch_items_total{pool,outcome}` (`accepted`, `committed`, `failed`, `shed`,
    /// `cancelled`, `rejected`), `surgepool_batch_flushes_total{pool,outcome}` (`all`,
    /// `failed`, `bisection`), and the gauges `surgepool_limit` (flushes allowed at once),
    /// `surgepool_in_flight` (flushes running), `surgepool_queued` (items waiting) and
    /// `surgepool_batch_size_mean`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), surgepool::BuildError> {
    /// use surgepool::batch::Batcher;
    /// let batcher: Batcher<u32, u32> =
    ///     Batcher::builder(|xs: Vec<u32>| async move { Ok::<_, std::io::Error>(xs) }).build()?;
    /// let mut publisher = surgepool::metrics::Publisher::new().batcher("orders", &batcher);
    /// publisher.publish();
    /// # Ok(())
    /// # }
    /// ```
    pub fn batcher<T, R>(
        mut self,
        name: impl Into<String>,
        batcher: &crate::batch::Batcher<T, R>,
    ) -> Publisher
    where
        T: Send + 'static,
        R: Send + 'static,
    {
        let batcher = batcher.clone();
        let name: Arc<str> = Arc::from(name.into());
        let label = name.clone();
        self.sources.push(Source {
            name,
            kind: Kind::Custom(Box::new(move || publish_batch(&label, &batcher.snapshot()))),
        });
        self
    }

    /// Runs `publish` on every publish: how other crates add their metrics (for example
    /// `surgepool-tower`'s `AdmissionLayer::publish_metrics`).
    ///
    /// ```
    /// let mut publisher = surgepool::metrics::Publisher::new()
    ///     .with(|| metrics::gauge!("my_queue_depth").set(3.0));
    /// publisher.publish();
    /// ```
    pub fn with(mut self, publish: impl FnMut() + Send + 'static) -> Publisher {
        self.sources.push(Source {
            name: Arc::from(""),
            kind: Kind::Custom(Box::new(publish)),
        });
        self
    }

    /// Publishes every source once, now, to the recorder installed for this thread or
    /// globally. See the [example on `Publisher`](Publisher#examples).
    pub fn publish(&mut self) {
        describe_once();
        for source in &mut self.sources {
            source.publish();
        }
    }

    /// Publishes now and then every `every` on a tokio task, until the returned
    /// [`PublisherTask`] is dropped. `every` is clamped to at least 10 ms. See the
    /// [example on `Publisher`](Publisher#examples).
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime (as `tokio::spawn` does).
    pub fn spawn(mut self, every: Duration) -> PublisherTask {
        let every = every.max(MIN_INTERVAL);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                self.publish();
            }
        });
        PublisherTask { task }
    }
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.sources.iter().map(|s| &*s.name).collect();
        f.debug_struct("Publisher")
            .field("sources", &names)
            .finish()
    }
}

/// The shortest interval [`Publisher::spawn`] accepts: publishing copies a few KiB of
/// latency counts per pool, which is nothing at 1 Hz and something at 1 kHz.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// A spawned [`Publisher`]; dropping it stops the publishing task. See the
/// [example on `Publisher`](Publisher#examples).
#[derive(Debug)]
pub struct PublisherTask {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PublisherTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn publish_snapshot(name: &Arc<str>, s: &Snapshot) {
    let pool = name.to_string();
    counter!("surgepool_tasks_submitted_total", "pool" => pool.clone()).absolute(s.submitted);
    for (outcome, value) in [
        ("accepted", s.accepted),
        ("completed", s.completed),
        ("panicked", s.panicked),
        ("cancelled", s.cancelled),
        ("shed", s.shed),
        ("rejected", s.rejected),
    ] {
        counter!("surgepool_tasks_total", "pool" => pool.clone(), "outcome" => outcome)
            .absolute(value);
    }
    counter!("surgepool_shed_total", "pool" => pool.clone(), "reason" => "full")
        .absolute(s.rejected);
    counter!("surgepool_shed_total", "pool" => pool.clone(), "reason" => "queue").absolute(s.shed);
    gauge!("surgepool_limit", "pool" => pool.clone()).set(s.limit as f64);
    gauge!("surgepool_in_flight", "pool" => pool.clone()).set(s.running as f64);
    gauge!("surgepool_queued", "pool" => pool.clone()).set(s.queued as f64);
    gauge!("surgepool_workers", "pool" => pool).set(s.workers as f64);
}

fn publish_latencies(name: &Arc<str>, now: &Latencies, before: Option<&Latencies>) {
    const NAMES: [&str; 3] = [
        "surgepool_queue_wait_seconds",
        "surgepool_run_seconds",
        "surgepool_end_to_end_seconds",
    ];
    let before = before.map(Latencies::recorders);
    for (i, (metric, recorder)) in NAMES.iter().zip(now.recorders()).enumerate() {
        let h = histogram!(*metric, "pool" => name.to_string());
        recorder.for_each_new(before.map(|b| b[i]), |nanos, count| {
            let seconds = nanos as f64 / 1e9;
            h.record_many(seconds, usize::try_from(count).unwrap_or(usize::MAX));
        });
    }
}

fn publish_batch(name: &Arc<str>, s: &crate::batch::BatchSnapshot) {
    let pool = name.to_string();
    for (outcome, value) in [
        ("accepted", s.accepted),
        ("committed", s.committed),
        ("failed", s.failed),
        ("shed", s.shed),
        ("cancelled", s.cancelled),
        ("rejected", s.rejected),
    ] {
        counter!("surgepool_batch_items_total", "pool" => pool.clone(), "outcome" => outcome)
            .absolute(value);
    }
    for (outcome, value) in [
        ("all", s.flushes),
        ("failed", s.failed_flushes),
        ("bisection", s.bisections),
    ] {
        counter!("surgepool_batch_flushes_total", "pool" => pool.clone(), "outcome" => outcome)
            .absolute(value);
    }
    gauge!("surgepool_limit", "pool" => pool.clone()).set(s.limit as f64);
    gauge!("surgepool_in_flight", "pool" => pool.clone()).set(s.flushes_running as f64);
    gauge!("surgepool_queued", "pool" => pool.clone()).set(s.queued as f64);
    gauge!("surgepool_batch_size_mean", "pool" => pool).set(s.batch_size.mean);
}

fn publish_limiter(name: &Arc<str>, limiter: &Limiter) {
    let stats = limiter.stats();
    let pool = name.to_string();
    gauge!("surgepool_limit", "pool" => pool.clone()).set(stats.limit as f64);
    gauge!("surgepool_in_flight", "pool" => pool.clone()).set(stats.in_flight as f64);
    for (outcome, value) in [
        ("succeeded", stats.succeeded),
        ("dropped", stats.dropped),
        ("ignored", stats.ignored),
    ] {
        counter!("surgepool_limiter_samples_total", "pool" => pool.clone(), "outcome" => outcome)
            .absolute(value);
    }
}

/// Descriptions go to the recorder once per process (recorders keep them).
fn describe_once() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| {
        describe_counter!(
            "surgepool_tasks_submitted_total",
            "Tasks submitted to the pool, accepted or not."
        );
        describe_counter!("surgepool_tasks_total", "Tasks by outcome.");
        describe_counter!(
            "surgepool_shed_total",
            "Tasks shed: refused at the door (full) or dropped from the queue (queue)."
        );
        describe_gauge!("surgepool_limit", "The concurrency limit now.");
        describe_gauge!("surgepool_in_flight", "Tasks running now.");
        describe_gauge!("surgepool_queued", "Tasks waiting in the queue now.");
        describe_gauge!("surgepool_workers", "Workers alive now.");
        describe_histogram!(
            "surgepool_queue_wait_seconds",
            metrics::Unit::Seconds,
            "Time from submit to start."
        );
        describe_histogram!(
            "surgepool_run_seconds",
            metrics::Unit::Seconds,
            "Time from start to end."
        );
        describe_histogram!(
            "surgepool_end_to_end_seconds",
            metrics::Unit::Seconds,
            "Queue wait plus run time."
        );
        describe_counter!(
            "surgepool_limiter_samples_total",
            "A limiter's samples by outcome."
        );
    });
}
