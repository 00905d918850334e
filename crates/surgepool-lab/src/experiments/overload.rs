//! The `overload` experiment: seed 003 rerun honestly.
//!
//! Open-loop arrivals far above what the machine can finish, each request doing seed 003's
//! job (allocate 500 KB, 20 ms of work), against four strategies, each in its own child
//! process under a memory cap:
//!
//! | strategy   | what it is |
//! |------------|------------|
//! | `naive`    | `tokio::spawn` per request: "just spawn and hope" |
//! | `fixed`    | surgepool `Pool`, `Limit::fixed(5000)`, queue 100,000: the seed's settings |
//! | `tower`    | tower `LoadShed<ConcurrencyLimit<service_fn>>`, limit 5000: today's Rust answer |
//! | `adaptive` | surgepool `Pool`, `Limit::adaptive()`, our recommended small queue |
//!
//! `--sweep` adds `fixed_<N>` (powers of two) to find the best fixed limit for this machine;
//! `--strategies` also takes the Netflix anchors `aimd`, `vegas` and `gradient2`, with the
//! same queue as `adaptive`, so they are compared in the same run, and `adaptive_tol<T>`,
//! `adaptive_gain<G>` or `adaptive_tol<T>_gain<G>` (`Limit::adaptive_builder()` with its
//! `tolerance` and/or `gain` set) to sweep the default's knobs, and `adaptive_metrics`
//! (`adaptive` publishing surgepool's `metrics` to a Prometheus recorder) to see what the
//! metrics cost.
//!
//! The headline figure is **SLO goodput** (`slo_goodput_rps`): completions per second whose
//! latency from intended arrival is within `--slo-ms` (default 3 × the service time).
//! `--scenario slowdown|capacity-drop` changes the load halfway through every strategy's
//! arrivals (see [`change`]); each strategy reports both halves under `phases`.
//!
//! Measurement follows DESIGN.md's "Honest measurement": latency from each request's
//! intended arrival (queue wait included, no coordinated omission), RSS from `/proc` sampled
//! 20×/s by the parent, a child stopped at the memory cap is reported so, and every request
//! is accounted for. With `--work cpu` the work spins on the tokio workers and blocks them;
//! the load generator has its own OS thread so it is not starved with them.

use std::path::PathBuf;

use anyhow::{bail, Context as _};

mod accounting;
mod change;
mod child_run;
mod goals;
mod messages;
mod params;
mod preset;
mod recorder;
mod strategy;
mod supervise;
mod table;

use self::change::Change;
use self::params::Params;
use self::preset::Preset;
use self::strategy::Strategy;
use crate::scenario_json::{Machine, Scenario, ScenarioReport};
use crate::work::WorkKind;

/// Arguments of `surgepool-lab overload` (boxed: they are large, and the other
/// subcommands' arguments are small).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    inner: Box<Options>,
}

/// The options themselves.
#[derive(Debug, clap::Args)]
struct Options {
    /// Preset: `quick` (about 90 s on 2 cores) or `seed` (seed 003: 1M req/s for 30 s).
    #[arg(long, value_enum, default_value_t = Preset::Quick)]
    preset: Preset,
    /// What each request does for its service time.
    #[arg(long, value_enum, default_value_t = WorkKind::Sleep)]
    work: WorkKind,
    /// Strategies to run, comma-separated: naive, fixed, tower, adaptive, aimd, vegas,
    /// gradient2, fixed_<N>, adaptive_tol<T>, adaptive_gain<G>, adaptive_slo<MS>, or several
    /// of those knobs joined by `_` (the adaptive limit with its tolerance, gain and/or
    /// latency objective in ms set, e.g. adaptive_tol1.5_gain0.25, adaptive_slo60),
    /// adaptive_metrics (adaptive, publishing metrics to a Prometheus recorder).
    #[arg(long, value_delimiter = ',')]
    strategies: Option<Vec<String>>,
    /// Offered requests per second (default: the preset's, for the work).
    #[arg(long)]
    rps: Option<u64>,
    /// Seconds of arrivals per strategy (default: the preset's).
    #[arg(long)]
    duration: Option<f64>,
    /// Service time per request, ms.
    #[arg(long)]
    service_ms: Option<u64>,
    /// The latency SLO in ms, from intended arrival (default: 3 × the service time).
    #[arg(long)]
    slo_ms: Option<f64>,
    /// How the load changes halfway through each strategy's arrivals.
    #[arg(long, value_enum, default_value_t = Change::Steady)]
    scenario: Change,
    /// Allocation per request, KiB.
    #[arg(long)]
    alloc_kb: Option<u64>,
    /// Seconds each strategy may drain accepted work after arrivals stop (then the rest is
    /// cancelled and counted).
    #[arg(long)]
    drain: Option<f64>,
    /// Also run fixed limits across a range (`fixed_<N>`) to find the best for this machine.
    #[arg(long)]
    sweep: bool,
    /// The limits `--sweep` runs, comma-separated (default: 1, 2, 4, ..., 4096).
    #[arg(long, value_delimiter = ',')]
    sweep_limits: Option<Vec<usize>>,
    /// Seconds of arrivals per swept limit (default: the same as `--duration`, so that every
    /// strategy is judged against runs as long as its own).
    #[arg(long)]
    sweep_duration: Option<f64>,
    /// Stop a strategy whose RSS passes this many GB (default: half the machine's memory).
    #[arg(long)]
    mem_cap_gb: Option<f64>,
    /// Queue slots of `adaptive` and `fixed_<N>` (default: the recommended 64).
    #[arg(long)]
    queue_capacity: Option<usize>,
    /// Queue timeout of `adaptive` and `fixed_<N>`, ms; 0 = none (default: the recommended
    /// 5 ms, CoDel's target delay).
    #[arg(long)]
    queue_timeout_ms: Option<f64>,
    /// tokio worker threads per child (default: the machine's available parallelism).
    #[arg(long)]
    workers: Option<usize>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an HTML report (index.html with charts) into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write the decision trace of every adaptive limit into this directory, one
    /// `<strategy>.log` per strategy run with `Limit::adaptive()` (`adaptive`,
    /// `adaptive_metrics`, `adaptive_<knobs>`; the others decide nothing and get no file): a
    /// line per measure window (what it measured, the move it judged, where the limit went;
    /// see `trace.rs` in surgepool for the fields).
    #[arg(long)]
    trace_limit: Option<PathBuf>,
    /// Internal: run one strategy in this process (the parent re-invokes itself with it).
    #[arg(long, hide = true)]
    child: Option<String>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let args = *args.inner;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let defaults = args.preset.defaults(args.work);
    let service_ms = args.service_ms.unwrap_or(defaults.service_ms);
    let params = Params {
        work: args.work,
        rps: args.rps.unwrap_or(defaults.rps),
        duration_s: args.duration.unwrap_or(defaults.duration_s),
        service_ms,
        alloc_kb: args.alloc_kb.unwrap_or(defaults.alloc_kb),
        drain_s: args.drain.unwrap_or(defaults.drain_s),
        worker_threads: args.workers.unwrap_or(cores),
        queue: strategy::QueuePolicy {
            capacity: args
                .queue_capacity
                .unwrap_or(strategy::RECOMMENDED_QUEUE.capacity),
            timeout: match args.queue_timeout_ms {
                None => strategy::RECOMMENDED_QUEUE.timeout,
                Some(ms) if ms.is_finite() && ms > 0.0 && ms <= f64::from(crate::MAX_MS) => {
                    Some(std::time::Duration::from_secs_f64(ms / 1000.0))
                }
                Some(0.0) => None,
                Some(ms) => bail!(
                    "--queue-timeout-ms must be between 0 and {}, got {ms}",
                    crate::MAX_MS
                ),
            },
        },
        slo_ms: match args.slo_ms {
            None => 3.0 * service_ms as f64,
            Some(ms) if ms.is_finite() && ms > 0.0 && ms <= f64::from(crate::MAX_MS) => ms,
            Some(ms) => bail!(
                "--slo-ms must be above 0 and at most {}, got {ms}",
                crate::MAX_MS
            ),
        },
        change: args.scenario,
        trace_dir: args.trace_limit.clone(),
    };
    validate(&params)?;

    if let Some(name) = &args.child {
        let strategy = Strategy::parse(name).map_err(anyhow::Error::msg)?;
        return child_run::run(strategy, &params);
    }

    if let Some(dir) = &params.trace_dir {
        crate::limit_trace::create_dir(dir)?;
    }
    let memory = crate::rss::total_memory_bytes().context("cannot read the machine's memory")?;
    let mem_cap_bytes = match args.mem_cap_gb {
        Some(gb) if gb.is_finite() && gb > 0.0 => (gb * 1e9) as u64,
        Some(gb) => bail!("--mem-cap-gb must be a positive number of GB, got {gb}"),
        None => memory / 2,
    };
    let mut strategies = match &args.strategies {
        Some(names) => names
            .iter()
            .map(|n| Strategy::parse(n))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?,
        None => strategy::DEFAULT.to_vec(),
    };
    let mut runs: Vec<(Strategy, Params)> =
        strategies.drain(..).map(|s| (s, params.clone())).collect();
    if args.sweep {
        let limits = args
            .sweep_limits
            .clone()
            .unwrap_or_else(strategy::default_sweep);
        if limits.contains(&0) {
            bail!("--sweep-limits must all be at least 1");
        }
        let sweep_params = Params {
            // Every swept run lasts as long as the strategies it is judged against: a shorter
            // one pays its own start (a fixed limit's first burst of allocations) over fewer
            // seconds, and the comparison favoured the adaptive limit, whose slow start its
            // longer run spread thinner (the quick preset's sweep ran 8 s against 15 s).
            // Under a changing load every swept run also sees the change at the same second.
            duration_s: args.sweep_duration.unwrap_or(params.duration_s),
            ..params.clone()
        };
        validate(&sweep_params)?;
        runs.extend(
            limits
                .into_iter()
                .map(|n| (Strategy::FixedN(n), sweep_params.clone())),
        );
    }

    let customised = args.rps.is_some()
        || args.queue_capacity.is_some()
        || args.queue_timeout_ms.is_some()
        || args.duration.is_some()
        || args.service_ms.is_some()
        || args.alloc_kb.is_some()
        || args.slo_ms.is_some();
    let scenario = Scenario {
        preset: if customised {
            format!("{} (customised)", args.preset.name())
        } else {
            args.preset.name().to_owned()
        },
        work: params.work.name().to_owned(),
        offered_rps: params.rps,
        duration_s: params.duration_s,
        service_ms: params.service_ms,
        alloc_kb: params.alloc_kb,
        mem_cap_bytes,
        drain_s: params.drain_s,
        worker_threads: params.worker_threads,
        slo_ms: params.slo_ms,
        kind: params.change.name().to_owned(),
    };
    eprintln!(
        "overload: {} ({}): {} work, {} req/s for {} s, {} ms service, {} KiB each, SLO {} ms; memory cap {:.1} GB; {} strategies",
        scenario.kind,
        params.change.describe(),
        scenario.work,
        scenario.offered_rps,
        scenario.duration_s,
        scenario.service_ms,
        scenario.alloc_kb,
        scenario.slo_ms,
        mem_cap_bytes as f64 / 1e9,
        runs.len()
    );

    let mut results = Vec::with_capacity(runs.len());
    for (strategy, p) in &runs {
        let result = supervise::run_strategy(*strategy, p, mem_cap_bytes)?;
        results.push(result);
    }
    let mut report = ScenarioReport {
        scenario,
        strategies: results,
        machine: Machine {
            cores,
            memory_bytes: memory,
            allocator: crate::alloc_count::ALLOCATOR.to_owned(),
        },
        goals: Vec::new(),
    };
    report.goals = goals::check(&report);

    println!("{}", table::render(&report));
    for (r, (strategy, _)) in report.strategies.iter().zip(&runs) {
        if strategy.is_surgepool() && r.lost != 0 {
            eprintln!(
                "overload: WARNING: {} lost {} requests (must be 0): {}",
                r.name,
                r.lost,
                r.accounting_notes.join("; ")
            );
        }
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("overload: wrote {}", path.display());
    }
    if let Some(dir) = &args.report {
        let path = crate::report::write_overload(
            dir,
            &report,
            &table::cells(&report),
            "surgepool-lab overload: seed 003 rerun",
        )?;
        eprintln!("overload: wrote {}", path.display());
    }
    Ok(())
}

fn validate(p: &Params) -> anyhow::Result<()> {
    if p.rps == 0 {
        bail!("--rps must be at least 1");
    }
    if !(p.duration_s.is_finite() && p.duration_s > 0.0 && p.duration_s <= 3600.0) {
        bail!(
            "--duration must be between 0 and 3600 seconds, got {}",
            p.duration_s
        );
    }
    if !(p.drain_s.is_finite() && p.drain_s >= 0.0 && p.drain_s <= 600.0) {
        bail!(
            "--drain must be between 0 and 600 seconds, got {}",
            p.drain_s
        );
    }
    if p.service_ms == 0 || p.service_ms > 60_000 {
        bail!(
            "--service-ms must be between 1 and 60000, got {}",
            p.service_ms
        );
    }
    if p.alloc_kb > 1 << 20 {
        bail!(
            "--alloc-kb must be at most 1 GiB (1048576), got {}",
            p.alloc_kb
        );
    }
    if p.worker_threads == 0 || p.worker_threads > 1024 {
        bail!(
            "--workers must be between 1 and 1024, got {}",
            p.worker_threads
        );
    }
    Ok(())
}

/// A waker that does nothing: the tower strategy polls its service once, synchronously,
/// from the generator thread (as a server's accept loop would), and never waits on it.
pub(crate) fn noop_waker() -> std::task::Waker {
    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: std::sync::Arc<Self>) {}
    }
    static WAKER: std::sync::OnceLock<std::task::Waker> = std::sync::OnceLock::new();
    WAKER
        .get_or_init(|| std::task::Waker::from(std::sync::Arc::new(Noop)))
        .clone()
}
