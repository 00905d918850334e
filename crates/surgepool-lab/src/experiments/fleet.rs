//! The `fleet` experiment (issue 14): a local pool that overflows into Redis Streams, drained
//! by adaptive consumers, against the local pool alone and against fixed-concurrency
//! consumers (the model of apalis, Sidekiq, BullMQ, River and Faktory).
//!
//! It starts its own `redis-server` (free port, temp dir, `appendfsync everysec`). Every job
//! calls one shared downstream that admits `--downstream` calls at once for `--service-ms`
//! each; callers beyond that wait for it, as they would for a database's connections.
//!
//! | scenario   | strategy               | what it shows |
//! |------------|------------------------|---------------|
//! | `spike`    | `local_only`           | a spike above the local pool's capacity: it sheds |
//! | `spike`    | `overflow_adaptive`    | the same spike through `Overflow`: nothing shed, the backlog drains after it |
//! | `slowdown` | `overflow_adaptive`    | the downstream slows 3× halfway: adaptive consumers fetch less |
//! | `slowdown` | `overflow_fixed_<N>`   | the same with `Limit::fixed(N)` per consumer: in-flight work piles up |
//!
//! The consumers are processes (this binary re-run as `surgepool-lab fleet-consumer`, one
//! `Consumer` each with its own connections and name), standing in for machines. The
//! downstream is a loopback TCP service in the lab's process (`downstream.rs`), which the
//! producer's local pool calls directly and the consumers over one connection each; it
//! records each job's completion. Latency is measured from each job's intended arrival to
//! the end of its downstream call (no coordinated omission); duplicates are job ids that
//! ran twice, `lost` are accepted jobs that neither ran, nor were dead-lettered, nor are
//! still waiting in Redis at the end.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use surgepool_redis::server::RedisServer;

mod downstream;
mod output;
mod process;
mod run_row;
mod sim;

pub(crate) use self::process::{run as run_consumer, ConsumerArgs};
use self::run_row::run_row;
use self::sim::Quantiles;

/// The most consumer processes one run starts.
const MAX_CONSUMERS: usize = 64;

/// Arguments of `surgepool-lab fleet`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Consumer processes draining the stream (each a `Consumer` with its own connections and
    /// name), at most 64.
    #[arg(long, default_value_t = 2)]
    consumers: usize,
    /// Offered jobs per second during the spike.
    #[arg(long, default_value_t = 4000)]
    spike_rps: u64,
    /// Seconds of spike arrivals.
    #[arg(long, default_value_t = 3.0)]
    spike_secs: f64,
    /// Offered jobs per second in the slowdown scenario (the downstream slows 3× halfway).
    #[arg(long, default_value_t = 2400)]
    slowdown_rps: u64,
    /// Seconds of arrivals in the slowdown scenario.
    #[arg(long, default_value_t = 6.0)]
    slowdown_secs: f64,
    /// The downstream's service time per job, ms (before the slowdown).
    #[arg(long, default_value_t = 10)]
    service_ms: u64,
    /// Calls the downstream serves at once; the rest wait for it.
    #[arg(long, default_value_t = 48)]
    downstream: usize,
    /// The producer's local pool: `Limit::fixed(N)`, no queue.
    #[arg(long, default_value_t = 16)]
    local_limit: usize,
    /// The fixed limit per consumer of `overflow_fixed_<N>`.
    #[arg(long, default_value_t = 64)]
    fixed: usize,
    /// The stream's bound (`max_len`): past it `Overflow` sheds.
    #[arg(long, default_value_t = 1_000_000)]
    max_len: u64,
    /// The latency SLO from intended arrival, ms (default: 3 × the service time).
    #[arg(long)]
    slo_ms: Option<u64>,
    /// Seconds each strategy may drain its backlog after arrivals stop.
    #[arg(long, default_value_t = 20.0)]
    drain_secs: f64,
    /// Redis `appendfsync` setting of the lab's own redis-server.
    #[arg(long, default_value = "everysec")]
    fsync: String,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an HTML report (charts of backlog and in-flight work over time) into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// Which scenario a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Spike,
    Slowdown,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Spike => "spike",
            Scenario::Slowdown => "slowdown",
        }
    }
}

/// How the overflow is drained, if at all.
#[derive(Debug, Clone, Copy)]
enum Strategy {
    LocalOnly,
    Adaptive,
    Fixed(usize),
}

impl Strategy {
    fn name(self) -> String {
        match self {
            Strategy::LocalOnly => "local_only".to_owned(),
            Strategy::Adaptive => "overflow_adaptive".to_owned(),
            Strategy::Fixed(n) => format!("overflow_fixed_{n}"),
        }
    }
}

/// One sample of the fleet, every 100 ms.
#[derive(Debug, Clone, serde::Serialize)]
struct Sample {
    t_s: f64,
    /// Jobs waiting in Redis (stream + retry set).
    backlog: u64,
    /// Jobs fetched by the consumers and not yet settled.
    in_flight: u64,
    /// The consumers' limits, summed (what the next fetches may take).
    limit: u64,
    /// Each consumer process's limit (the sum is `limit`).
    limits: Vec<u64>,
    /// Entries per XREADGROUP over the last interval, all consumers (0: no read got any).
    fetch_size: f64,
    /// Completions per second over the last interval (local and consumed).
    done_per_s: f64,
    /// The highest latency from intended arrival among the last interval's completions, ms.
    max_latency_ms: f64,
}

/// One row of the table and of the JSON.
#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    scenario: &'static str,
    strategy: String,
    offered: u64,
    /// Accepted: run locally or pushed into Redis.
    pushed: u64,
    local: u64,
    queued: u64,
    acked: u64,
    dead: u64,
    lost: u64,
    duplicates: u64,
    shed: u64,
    /// Still in Redis when the drain time ran out.
    waiting: u64,
    redis_errors: u64,
    jobs_per_s: f64,
    latency_ms: Quantiles,
    /// Time inside the handler (waiting for the downstream + its service).
    run_ms: Quantiles,
    slo_goodput_rps: f64,
    in_flight_max: u64,
    /// Mean consumer in-flight work over the samples after the slowdown began.
    in_flight_mean_late: f64,
    /// Seconds from the last arrival until the backlog was empty (None: not within the drain).
    drain_s: Option<f64>,
    series: Vec<Sample>,
}

/// Runs the experiment.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    if args.consumers == 0 || args.local_limit == 0 || args.fixed == 0 {
        bail!("--consumers, --local-limit and --fixed must be at least 1");
    }
    if args.consumers > MAX_CONSUMERS {
        bail!("--consumers is at most {MAX_CONSUMERS} (each is a process on this machine)");
    }
    if !(args.spike_secs.is_finite()
        && args.slowdown_secs.is_finite()
        && args.drain_secs.is_finite())
        || args.spike_secs <= 0.0
        || args.slowdown_secs <= 0.0
        || args.drain_secs < 0.0
        || args.drain_secs > 3600.0
        || args.spike_secs > 3600.0
        || args.slowdown_secs > 3600.0
    {
        bail!("--spike-secs, --slowdown-secs and --drain-secs must be within 0..3600 seconds");
    }
    if args.spike_rps == 0 || args.slowdown_rps == 0 || args.service_ms == 0 {
        bail!("--spike-rps, --slowdown-rps and --service-ms must be at least 1");
    }
    if RedisServer::binary().is_none() {
        bail!("fleet needs redis-server on PATH (apt-get install redis-server)");
    }
    let server = RedisServer::start_with_fsync(&args.fsync)
        .with_context(|| format!("redis-server did not start (appendfsync {})", args.fsync))?;
    eprintln!(
        "fleet: redis-server on port {} (appendonly yes, appendfsync {}); {} consumer processes per run",
        server.port(),
        args.fsync,
        args.consumers,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(crate::machine::cores().clamp(1, 4))
        .enable_all()
        .build()
        .context("cannot build the tokio runtime")?;
    let plan = [
        (Scenario::Spike, Strategy::LocalOnly),
        (Scenario::Spike, Strategy::Adaptive),
        (Scenario::Slowdown, Strategy::Adaptive),
        (Scenario::Slowdown, Strategy::Fixed(args.fixed)),
    ];
    let mut rows = Vec::new();
    for (i, (scenario, strategy)) in plan.into_iter().enumerate() {
        let url = server.url();
        let row = rt.block_on(run_row(&args, &url, i, scenario, strategy))?;
        rows.push(row);
    }
    drop(server);
    output::print_table(&rows);
    output::print_goals(&rows, args.service_ms);
    if let Some(path) = &args.json {
        output::write_json(path, &args, &rows)?;
        eprintln!("fleet: JSON written to {}", path.display());
    }
    if let Some(dir) = &args.report {
        let path = output::write_report(dir, &rows)?;
        eprintln!("fleet: report written to {}", path.display());
    }
    Ok(())
}

impl Args {
    fn slo(&self) -> Duration {
        Duration::from_millis(self.slo_ms.unwrap_or(self.service_ms.saturating_mul(3)))
    }
}
