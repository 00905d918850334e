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
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use surgepool::{Limit, Pool, SubmitError};
use surgepool_redis::server::RedisServer;
use surgepool_redis::{Job, Overflow, Queue, Source};
use tokio::sync::watch;
use tokio::task::JoinSet;

mod downstream;
mod output;
mod process;
mod sim;

pub(crate) use self::process::{run as run_consumer, ConsumerArgs};
use self::process::{Proc, Report};
use self::sim::{encode, Ctx, Quantiles};

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

async fn run_row(
    args: &Args,
    url: &str,
    index: usize,
    scenario: Scenario,
    strategy: Strategy,
) -> anyhow::Result<Row> {
    let (rps, secs) = match scenario {
        Scenario::Spike => (args.spike_rps, args.spike_secs),
        Scenario::Slowdown => (args.slowdown_rps, args.slowdown_secs),
    };
    // Bounded by the checks in `run`: at most 3600 s × u64 rps, capped for memory.
    let jobs = ((rps as f64 * secs) as u64).clamp(1, 10_000_000);
    let service = Duration::from_millis(args.service_ms);
    let ctx = Ctx::new(jobs, args.downstream, service, args.slo());
    let pool = Pool::builder()
        .limit(Limit::fixed(args.local_limit))
        .queue_capacity(0)
        .build()
        .context("local pool")?;
    let label = format!("{}/{}", scenario.name(), strategy.name());
    let bar = output::progress(&label, jobs);

    // The overflow path and its consumer processes (none for local_only).
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut fleet: Option<(Overflow, Queue, Vec<Proc>)> = None;
    let mut serving = None;
    if !matches!(strategy, Strategy::LocalOnly) {
        let name = format!("fleet-{index}");
        let queue = Queue::builder(url, &name)
            .max_len(args.max_len)
            .connect()
            .await
            .context("connecting to the lab's redis-server")?;
        let c = ctx.clone();
        let overflow = Overflow::new(pool.clone(), queue.clone(), move |job: Job| {
            let c = c.clone();
            async move { c.handle(job.payload(), job.source() == Source::Local).await }
        });
        let (addr, server) = downstream::serve(ctx.clone()).await?;
        serving = Some(server);
        let limit = match strategy {
            Strategy::Fixed(n) => format!("fixed:{n}"),
            _ => "adaptive".to_owned(),
        };
        let mut procs = Vec::new();
        for i in 0..args.consumers {
            procs.push(Proc::spawn(url, &name, &format!("c{i}"), &limit, addr)?);
        }
        // Each process reports once it is connected; arrivals start when all have.
        let ready_by = Instant::now() + Duration::from_secs(30);
        while procs.iter().any(|p| p.report().limit == 0) {
            if procs.iter_mut().any(Proc::has_exited) {
                bail!("a consumer process exited at start (its error is above)");
            }
            if Instant::now() >= ready_by {
                bail!("the consumer processes did not report within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        fleet = Some((overflow, queue, procs));
    }

    // The sampler: backlog and in-flight work every 100 ms.
    let sampler = {
        let fleet = fleet.as_ref().map(|(_, q, procs)| {
            (
                q.clone(),
                procs.iter().map(Proc::reports).collect::<Vec<_>>(),
            )
        });
        let ctx = ctx.clone();
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            let mut series = Vec::new();
            let (mut last_t, mut last_done) = (0.0, 0);
            let (mut last_read, mut last_reads) = (0u64, 0u64);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = rx.wait_for(|s| *s) => break,
                }
                let t_s = ctx.start.elapsed().as_secs_f64();
                let (backlog, in_flight, limits, fetch_size) = match &fleet {
                    Some((q, reports)) => {
                        let backlog = q.fleet().await.map(|f| f.waiting()).unwrap_or(0);
                        let snaps: Vec<Report> = reports.iter().map(|r| *lock(r)).collect();
                        let in_flight = snaps.iter().map(|s| s.in_flight).sum();
                        let read: u64 = snaps.iter().map(|s| s.read).sum();
                        let reads: u64 = snaps.iter().map(|s| s.reads).sum();
                        let (d_read, d_reads) = (
                            read.saturating_sub(last_read),
                            reads.saturating_sub(last_reads),
                        );
                        (last_read, last_reads) = (read, reads);
                        let size = if d_reads == 0 {
                            0.0
                        } else {
                            d_read as f64 / d_reads as f64
                        };
                        let limits = snaps.iter().map(|s| s.limit).collect();
                        (backlog, in_flight, limits, size)
                    }
                    None => (0, 0, Vec::new(), 0.0),
                };
                let limit = limits.iter().sum();
                let done = ctx.completed.load(Ordering::Relaxed);
                let dt = (t_s - last_t).max(1e-3);
                let done_per_s = done.saturating_sub(last_done) as f64 / dt;
                (last_t, last_done) = (t_s, done);
                series.push(Sample {
                    t_s,
                    backlog,
                    in_flight,
                    limit,
                    limits,
                    fetch_size,
                    done_per_s,
                    max_latency_ms: ctx.take_window_max_us() as f64 / 1000.0,
                });
            }
            series
        })
    };

    // Open-loop arrivals: each job is submitted at its intended time (late ones at once, and
    // their latency still counts from the intended time).
    let (mut local, mut queued, mut shed, mut errors) = (0u64, 0u64, 0u64, 0u64);
    let mut submits = JoinSet::new();
    let interval_us = 1_000_000.0 / rps as f64;
    let slow_at_us = (secs * 500_000.0) as u64;
    let mut slowed = false;
    for seq in 0..jobs {
        let intended = (seq as f64 * interval_us) as u64;
        let now = ctx.now_us();
        if intended > now {
            tokio::time::sleep(Duration::from_micros(intended - now)).await;
        }
        if scenario == Scenario::Slowdown && !slowed && intended >= slow_at_us {
            ctx.set_service(service.saturating_mul(3));
            slowed = true;
        }
        let payload = encode(seq, intended);
        match &fleet {
            None => {
                let c = ctx.clone();
                let job = async move { c.handle(&payload, true).await };
                match pool.try_submit(job) {
                    Ok(_) => local += 1,
                    Err(SubmitError::Full(_)) => shed += 1,
                    Err(_) => errors += 1,
                }
            }
            Some((overflow, _, _)) => {
                let o = overflow.clone();
                submits.spawn(async move { o.submit(payload).await.map(|_| ()) });
            }
        }
        bar.set_position(ctx.completed.load(Ordering::Relaxed));
    }
    let arrivals_end = ctx.start.elapsed();
    while let Some(r) = submits.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.is_full() => shed += 1,
            _ => errors += 1,
        }
    }
    if let Some((overflow, _, _)) = &fleet {
        let s = overflow.stats();
        local = s.local;
        queued = s.queued;
    }
    let pushed = local + queued;

    // Drain: until every accepted job ran, or the drain time is up.
    let deadline = Instant::now() + Duration::from_secs_f64(args.drain_secs);
    let mut drain_s = None;
    loop {
        let (distinct, _) = ctx.distinct_and_duplicates();
        bar.set_position(ctx.completed.load(Ordering::Relaxed));
        if distinct >= pushed {
            drain_s = Some((ctx.start.elapsed().saturating_sub(arrivals_end)).as_secs_f64());
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = ctx.start.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let series = sampler.await.unwrap_or_default();
    bar.finish_and_clear();

    let (mut consumer_acked, mut dead, mut redis_errors, mut waiting) = (0, 0, 0, 0);
    if let Some((_, queue, procs)) = fleet.take() {
        // Each process drains (5 s grace) and exits; its last report is final.
        let reports = tokio::task::spawn_blocking(move || {
            procs
                .into_iter()
                .map(|p| p.stop(Duration::from_secs(30)))
                .collect::<Vec<_>>()
        })
        .await
        .context("stopping the consumer processes")?;
        for r in reports {
            let r: Report = r?;
            consumer_acked += r.acked;
            dead += r.dead;
            redis_errors += r.redis_errors;
        }
        waiting = queue.fleet().await.map(|f| f.waiting()).unwrap_or(0);
    }
    if let Some(server) = serving {
        server.abort();
    }
    let (distinct, duplicates) = ctx.distinct_and_duplicates();
    let local_done = ctx.local_done.load(Ordering::Relaxed);
    let late: Vec<&Sample> = series
        .iter()
        .filter(|s| s.t_s * 1e6 >= slow_at_us as f64 && s.t_s <= arrivals_end.as_secs_f64())
        .collect();
    let in_flight_mean_late = if late.is_empty() {
        0.0
    } else {
        late.iter().map(|s| s.in_flight as f64).sum::<f64>() / late.len() as f64
    };
    let secs_run = elapsed.max(1e-9);
    Ok(Row {
        scenario: scenario.name(),
        strategy: strategy.name(),
        offered: jobs,
        pushed,
        local,
        queued,
        acked: consumer_acked + local_done,
        dead,
        lost: pushed.saturating_sub(distinct + dead + waiting),
        duplicates,
        shed: shed + errors,
        waiting,
        redis_errors,
        jobs_per_s: distinct as f64 / secs_run,
        latency_ms: ctx.e2e_ms(),
        run_ms: ctx.run_ms(),
        slo_goodput_rps: ctx.within_slo.load(Ordering::Relaxed) as f64 / secs_run,
        in_flight_max: series.iter().map(|s| s.in_flight).max().unwrap_or(0),
        in_flight_mean_late,
        drain_s,
        series,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
