//! The child process: runs one strategy under open-loop load and reports on stdout.
//!
//! Threads: the tokio runtime's workers run the work (and nothing else); the generator has
//! its own OS thread, so CPU-bound work that blocks every worker cannot slow the arrivals;
//! a sampler thread prints a [`Sample`] every [`SAMPLE_EVERY`]; the main thread waits, then
//! drains, shuts down, and prints the [`StrategyResult`].

use std::convert::Infallible;
use std::future::Future as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use surgepool::{Limit, Pool, SubmitError};
use tower::limit::ConcurrencyLimit;
use tower::load_shed::LoadShed;
use tower::Service;

use super::change::{Change, Hog};
use super::messages::{ChildLine, Sample};
use super::params::Params;
use super::recorder::{Recorder, Tracked};
use super::strategy::{Strategy, SEED_QUEUE, TOWER_LIMIT};
use crate::child::emit;
use crate::open_loop::{Arrival, LoadProgress, Schedule};
use crate::rss::{self, Target};
use crate::scenario_json::StrategyResult;
use crate::work::Work;

/// How often the child reports.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// After the drain, how long the runtime may take to drop what is left.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(5);

type TowerService = LoadShed<
    ConcurrencyLimit<tower::util::ServiceFn<Box<dyn FnMut(Arrival) -> BoxedResponse + Send>>>,
>;
type BoxedResponse =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Infallible>> + Send>>;

/// How a strategy takes a request.
enum Admission {
    Naive(tokio::runtime::Handle),
    Tower(tokio::runtime::Handle, Box<TowerService>),
    Pool(Pool),
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Admission::Naive(_) => "Naive",
            Admission::Tower(..) => "Tower",
            Admission::Pool(_) => "Pool",
        })
    }
}

impl Admission {
    fn build(
        strategy: Strategy,
        params: &Params,
        recorder: &Arc<Recorder>,
    ) -> anyhow::Result<Self> {
        let handle = tokio::runtime::Handle::current();
        let work = params.work();
        let queue = params.queue;
        let pool = |limit: Limit, capacity: usize, timeout: Option<Duration>| {
            let mut builder = Pool::builder().limit(limit).queue_capacity(capacity);
            if let Some(t) = timeout {
                builder = builder.queue_timeout(t);
            }
            builder.build().context("cannot build the pool")
        };
        Ok(match strategy {
            Strategy::Naive => Admission::Naive(handle),
            // The seed's pool keeps the seed's queue; every other pool gets the recommended
            // one, so that they differ in their limit alone.
            Strategy::Fixed => {
                let limit = strategy.limit().context("fixed is a pool")?;
                Admission::Pool(pool(limit, SEED_QUEUE, None)?)
            }
            Strategy::AdaptiveMetrics => {
                let limit = strategy.limit().context("a pool strategy has a limit")?;
                let pool = pool(limit, queue.capacity, queue.timeout)?;
                publish_metrics(&pool)?;
                Admission::Pool(pool)
            }
            Strategy::Adaptive
            | Strategy::AdaptiveTuned { .. }
            | Strategy::FixedN(_)
            | Strategy::Aimd
            | Strategy::Vegas
            | Strategy::Gradient2 => {
                let limit = strategy.limit().context("a pool strategy has a limit")?;
                Admission::Pool(pool(limit, queue.capacity, queue.timeout)?)
            }
            Strategy::Tower => {
                let recorder = Arc::clone(recorder);
                // The inner service runs only for admitted requests: that is where the
                // request counts as accepted and its tracked work is created.
                let inner: Box<dyn FnMut(Arrival) -> BoxedResponse + Send> =
                    Box::new(move |arrival: Arrival| {
                        recorder.accepted();
                        let tracked = Tracked::new(Arc::clone(&recorder), arrival.intended, work);
                        Box::pin(async move {
                            tracked.await;
                            Ok::<(), Infallible>(())
                        })
                    });
                let svc =
                    LoadShed::new(ConcurrencyLimit::new(tower::service_fn(inner), TOWER_LIMIT));
                Admission::Tower(handle, Box::new(svc))
            }
        })
    }

    /// The limit now (0 when the strategy has none).
    fn limit(&self) -> u64 {
        match self {
            Admission::Naive(_) => 0,
            Admission::Tower(..) => TOWER_LIMIT as u64,
            Admission::Pool(pool) => pool.snapshot().limit,
        }
    }

    /// Offers one request. Never waits.
    fn admit(&mut self, recorder: &Arc<Recorder>, work: Work, arrival: Arrival) {
        match self {
            Admission::Naive(handle) => {
                recorder.accepted();
                drop(handle.spawn(Tracked::new(Arc::clone(recorder), arrival.intended, work)));
            }
            Admission::Pool(pool) => {
                let tracked = Tracked::new(Arc::clone(recorder), arrival.intended, work);
                match pool.try_submit(tracked) {
                    // Detached: the pool runs and counts it; the tracked future counts it too.
                    Ok(handle) => {
                        recorder.accepted();
                        drop(handle);
                    }
                    Err(err) => {
                        let closed = matches!(err, SubmitError::Closed(_));
                        err.into_inner().disarm();
                        recorder.rejected(arrival.intended);
                        if closed {
                            eprintln!("surgepool-lab: pool refused a request as closed");
                        }
                    }
                }
            }
            Admission::Tower(handle, svc) => {
                // As a server's accept loop drives a tower stack: poll_ready, then call.
                // `LoadShed` always reports ready and answers `Overloaded` at once when the
                // limit is used up; the inner service_fn runs only for admitted requests.
                let waker = super::noop_waker();
                let mut cx = Context::from_waker(&waker);
                match svc.poll_ready(&mut cx) {
                    Poll::Ready(Ok(())) => {}
                    // LoadShed never returns Pending or an error for this inner service.
                    _ => {
                        recorder.rejected(arrival.intended);
                        return;
                    }
                }
                let before = recorder.counts().accepted;
                let mut response = svc.call(arrival);
                if recorder.counts().accepted == before {
                    // Shed: the response future is an immediate `Overloaded` error.
                    let answered = std::pin::Pin::new(&mut response).poll(&mut cx);
                    debug_assert!(matches!(answered, Poll::Ready(Err(_))));
                    recorder.rejected(arrival.intended);
                } else {
                    drop(handle.spawn(response));
                }
            }
        }
    }
}

/// Runs `strategy` and prints samples and the result on stdout.
pub(crate) fn run(strategy: Strategy, params: &Params) -> anyhow::Result<()> {
    if let Some(dir) = params
        .trace_dir
        .as_ref()
        .filter(|_| strategy.traces_decisions())
    {
        crate::limit_trace::write_to(&dir.join(format!("{strategy}.log")))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(params.worker_threads)
        .thread_name("work")
        .enable_all()
        .build()
        .context("cannot build the tokio runtime")?;
    let recorder = Recorder::new(params.slo());
    let work = params.work();
    let admission = {
        let _enter = runtime.enter();
        Admission::build(strategy, params, &recorder)?
    };
    let pool = match &admission {
        Admission::Pool(p) => Some(p.clone()),
        _ => None,
    };
    let limit_probe: Box<dyn Fn() -> u64 + Send> = match &admission {
        Admission::Pool(p) => {
            let p = p.clone();
            Box::new(move || p.snapshot().limit)
        }
        other => {
            let fixed = other.limit();
            Box::new(move || fixed)
        }
    };

    let rss_sampler = rss::RssSampler::start(Target::SelfProcess)?;
    let progress = LoadProgress::default();
    let schedule = Schedule {
        rate: params.rps as f64,
        duration: params.duration(),
    };
    // The generator's schedule starts when its thread starts, a few microseconds after
    // this; the halves split at the midpoint of `started + duration`, close enough.
    let started = Instant::now();
    let midpoint = started + params.duration() / 2;
    recorder.split_halves(started, midpoint);
    let hog = match params.change {
        Change::Steady => None,
        Change::Slowdown => {
            recorder.slow_down_from(midpoint);
            None
        }
        Change::CapacityDrop => Some(Hog::start_at(midpoint).context("cannot start the hog")?),
    };

    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = {
        let recorder = Arc::clone(&recorder);
        let progress = progress.clone();
        let stop = Arc::clone(&stop_sampling);
        thread::Builder::new()
            .name("sampler".into())
            .spawn(move || -> anyhow::Result<()> {
                let mut last = Instant::now();
                let mut last_completed = 0;
                let mut last_within = 0;
                loop {
                    let stopping = stop.load(Ordering::SeqCst);
                    if !stopping {
                        thread::sleep(SAMPLE_EVERY);
                    }
                    let now = Instant::now();
                    let counts = recorder.counts();
                    let interval = recorder.take_interval();
                    let sample = Sample {
                        t_s: started.elapsed().as_secs_f64(),
                        offered: progress.offered(),
                        counts,
                        in_flight: counts.in_flight(),
                        limit: limit_probe(),
                        rss_bytes: rss::rss_bytes(Target::SelfProcess).unwrap_or(0),
                        interval_s: (now - last).as_secs_f64(),
                        goodput_rps: (counts.completed - last_completed) as f64
                            / (now - last).as_secs_f64().max(1e-9),
                        slo_goodput_rps: counts.within_slo.saturating_sub(last_within) as f64
                            / (now - last).as_secs_f64().max(1e-9),
                        p50_ms: interval.p50_ms,
                        p99_ms: interval.p99_ms,
                        latency_ms: interval.total,
                    };
                    last = now;
                    last_completed = counts.completed;
                    last_within = counts.within_slo;
                    emit(&ChildLine::Sample(sample))?;
                    if stopping {
                        return Ok(());
                    }
                }
            })?
    };

    let generator = {
        let recorder = Arc::clone(&recorder);
        let mut admission = admission;
        schedule.spawn(
            "generator",
            Some(runtime.handle().clone()),
            progress.clone(),
            move |arrival: Arrival| {
                recorder.arrived(arrival.intended);
                admission.admit(&recorder, work, arrival);
            },
        )?
    };
    let load = generator
        .join()
        .map_err(|_| anyhow::anyhow!("the load generator panicked"))?;

    // Drain: let accepted work finish, up to the drain time; then whatever is left is
    // cancelled (by the pool's shutdown deadline, or by dropping the runtime).
    let drain_started = Instant::now();
    let snapshot = runtime.block_on(async {
        match &pool {
            Some(pool) => {
                recorder.start_draining();
                let report = pool.shutdown_timeout(params.drain()).await;
                let _ = report;
                Some(pool.snapshot())
            }
            None => {
                while recorder.counts().in_flight() > 0 && drain_started.elapsed() < params.drain()
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                recorder.start_draining();
                None
            }
        }
    });
    let drained = drain_started.elapsed();
    // Arrivals ran for the schedule's duration (the generator stops at its end).
    let ran = params.duration() + drained;
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    drop(pool);
    let hog_took = hog.as_ref().and_then(Hog::took);
    drop(hog);

    stop_sampling.store(true, Ordering::SeqCst);
    sampler
        .join()
        .map_err(|_| anyhow::anyhow!("the sampler thread panicked"))??;
    let rss = rss_sampler.finish();

    let counts = recorder.counts();
    let (latency_ms, rejection_latency_ms) = recorder.latencies();
    let mut result = StrategyResult {
        name: strategy.to_string(),
        offered: load.offered,
        achieved_rps: load.achieved_rps,
        accepted: counts.accepted,
        rejected: counts.rejected,
        completed: counts.completed,
        failed: counts.failed,
        shed: counts.shed,
        cancelled: counts.cancelled,
        lost: 0,
        goodput_rps: counts.completed as f64 / ran.as_secs_f64().max(1e-9),
        slo_ms: params.slo_ms,
        slo_goodput_rps: counts.within_slo as f64 / ran.as_secs_f64().max(1e-9),
        within_slo: counts.within_slo,
        peak_rss_bytes: rss.peak,
        stopped_at_cap: false,
        ran_s: ran.as_secs_f64(),
        latency_ms,
        config: match hog_took {
            Some(what) => format!(
                "{}; at {:.1} s {what}",
                strategy.describe(params.queue),
                params.duration_s / 2.0
            ),
            None => strategy.describe(params.queue),
        },
        asked_rps: params.rps as f64,
        scheduled: load.scheduled,
        generator_lag_ms: load.final_lag.as_secs_f64() * 1000.0,
        stopped_at_cap_after_s: None,
        timed_out: false,
        rejection_latency_ms,
        final_limit: snapshot.as_ref().map_or(0, |s| s.limit),
        accounting_notes: Vec::new(),
        series: Vec::new(),
        phases: recorder.phases(params.duration()),
    };
    super::accounting::reconcile(&mut result, snapshot.as_ref());
    emit(&ChildLine::Result(Box::new(result)))?;
    Ok(())
}

/// `adaptive_metrics`: a Prometheus recorder for this process, the pool published to it every
/// 100 ms on the runtime (as `Publisher::spawn` runs in a service), and the exposition
/// rendered every second on a thread of its own (a scrape), for the life of the child.
fn publish_metrics(pool: &Pool) -> anyhow::Result<()> {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    let task = surgepool::metrics::Publisher::new()
        .pool(pool)
        .spawn(Duration::from_millis(100));
    // The child exits when its run ends; the publisher must live until then.
    std::mem::forget(task);
    thread::Builder::new()
        .name("scrape".to_owned())
        .spawn(move || loop {
            thread::sleep(Duration::from_secs(1));
            std::hint::black_box(prometheus.render());
        })
        .context("starting the scrape thread")?;
    Ok(())
}
