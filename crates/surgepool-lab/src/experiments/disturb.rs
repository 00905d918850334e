//! `surgepool-lab disturb`: the adaptive admission layer under the disturbances that used
//! to leave its limit stuck or collapsed, over loopback, each against a control run.
//!
//! Each case runs twice, each time on a fresh lab server (`/work`: 20 ms of sleep holding
//! 500 KiB, behind `AdmissionLayer` with `Limit::adaptive()`, or with a latency objective
//! given by `--slo-ms`) driven by closed-loop clients
//! that pause 2 ms after a 503 (`--retry-ms`): once **disturbed**, once as a **control**
//! with the same load and no disturbance (the order alternates from case to case). The
//! limit is sampled every 50 ms. The goal: the disturbed run's limit is back within 20 % of
//! its reference level, to stay for a second, within 2 s of the disturbance ending. The
//! reference is where the run's own limit was in the two seconds before a mid-run
//! disturbance, or the control run's median from 2 s after the change for a change at an
//! instant or from the start. Limits are judged as the concurrency they allow: one above the
//! number of clients counts as that number (with every client in a slot, more slots change
//! nothing; before 2026-12-05 a control at 2,048 and a disturbed run at 1,536, both
//! admitting all 1,024 clients and serving alike, read as "never back").
//!
//! | case | disturbance | judged from |
//! |---|---|---|
//! | `warmup` | the clients call the cheap `/hello` for `--before-s`, then `/work` | the switch |
//! | `retry-after` | the clients honour the layer's `Retry-After: 1` (+0–50 % jitter) | the start |
//! | `errors` | 20 % of `/work` requests fail fast with a 500 for `--during-s` | its end |
//! | `disconnects` | 1 client in 8 gives up at 10 ms, closing its connection | its end |
//!
//! The same cases run as deterministic simulations on paused time in
//! `crates/surgepool/tests/limit_robustness.rs`; this is the real thing, with its noise:
//! the control run's share of samples within 20 % of its own median (`steady`) says how
//! much the limit wanders on this machine with no disturbance at all.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};

mod judge;
mod run_case;

use judge::{judge, Reference, Verdict, Window, BAND};
use run_case::{RunSpec, RunTrace, SAMPLE_EVERY};

use crate::server::LayerChoice;

/// How long after the disturbance the judged span starts, and the goal's deadline.
const SETTLE: Duration = Duration::from_secs(2);

/// Below this share of steady samples the control run wandered too much for a sharp verdict.
const STEADY_ENOUGH: f64 = 0.8;

/// The disturbances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Case {
    /// Cheap `/hello` calls first, then the dear `/work`.
    Warmup,
    /// Clients that wait the `Retry-After` of every 503 (+0–50 % jitter).
    RetryAfter,
    /// 20 % of `/work` requests fail fast with a 500 for `--during-s`.
    Errors,
    /// One client in 8 gives up at 10 ms and closes its connection, for `--during-s`.
    Disconnects,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Warmup => "warmup",
            Case::RetryAfter => "retry-after",
            Case::Errors => "errors",
            Case::Disconnects => "disconnects",
        }
    }
}

/// Arguments of `surgepool-lab disturb`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Which cases (comma-separated; default: all four).
    #[arg(long, value_enum, value_delimiter = ',')]
    cases: Vec<Case>,
    /// Closed-loop clients, each on its own keep-alive connection.
    #[arg(long, default_value_t = 1024)]
    clients: usize,
    /// Seconds of load before the disturbance (`warmup`: of cheap `/hello` calls); above 1.1.
    #[arg(long, default_value_t = 4.0)]
    before_s: f64,
    /// Seconds the disturbance lasts (`errors`, `disconnects`).
    #[arg(long, default_value_t = 1.0)]
    during_s: f64,
    /// Seconds of load after it; the judged span is its last `after-s` − 2 (at least 0.5).
    #[arg(long, default_value_t = 4.0)]
    after_s: f64,
    /// `/work`'s sleep, in milliseconds.
    #[arg(long, default_value_t = 20)]
    service_ms: u64,
    /// `/work`'s allocation, in KiB.
    #[arg(long, default_value_t = 500)]
    alloc_kb: usize,
    /// Milliseconds a client waits after a 503 before its next request (unless it honours
    /// `Retry-After`): 2, the default, is the "2 ms retry", a storm of retries that
    /// costs the server a parse and an answer each.
    #[arg(long, default_value_t = 2)]
    retry_ms: u64,
    /// Give the adaptive layer this latency objective, in ms
    /// (`Limit::adaptive_builder().slo(..)`), instead of the default `Limit::adaptive()`.
    #[arg(long)]
    slo_ms: Option<u32>,
    /// The server's runtime threads (default: the machine's parallelism); the clients run
    /// on one more thread.
    #[arg(long)]
    server_threads: Option<usize>,
    /// Write the traces and verdicts as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the adaptive limit's decisions of each run to `DIR/<case>-<control|disturbed>.log`,
    /// a line per measure window (see `overload --trace-limit`).
    #[arg(long, value_name = "DIR")]
    trace_limit: Option<PathBuf>,
}

#[derive(Debug, serde::Serialize)]
struct CaseResult {
    case: Case,
    /// Seconds from the start of the run to the disturbance's start and end.
    disturbance_s: (f64, f64),
    verdict: Verdict,
    /// 2xx answers per second over the judged span.
    control_ok_rps: f64,
    disturbed_ok_rps: f64,
    met: bool,
    control: RunTrace,
    disturbed: RunTrace,
}

/// The settings every run shares, checked.
struct Settings {
    before: Duration,
    during: Duration,
    after: Duration,
    threads: usize,
    cases: Vec<Case>,
}

fn seconds(name: &str, s: f64, min: f64) -> anyhow::Result<Duration> {
    if !(min..=600.0).contains(&s) {
        bail!("--{name} must be between {min} and 600 seconds, got {s}");
    }
    Ok(Duration::from_secs_f64(s))
}

fn check(args: &Args) -> anyhow::Result<Settings> {
    // The reference needs samples between the end of slow start (1 s) and the disturbance,
    // and the judged span some samples after the settle time.
    let before = seconds("before-s", args.before_s, 1.1)?;
    let during = seconds("during-s", args.during_s, 0.0)?;
    let after = seconds("after-s", args.after_s, SETTLE.as_secs_f64() + 0.5)?;
    if !(1..=20_000).contains(&args.clients) {
        bail!(
            "--clients must be between 1 and 20000, got {}",
            args.clients
        );
    }
    check_fd_limit(args.clients)?;
    if !(1..=60_000).contains(&args.service_ms) {
        bail!(
            "--service-ms must be between 1 and 60000, got {}",
            args.service_ms
        );
    }
    if args.retry_ms > 60_000 {
        bail!("--retry-ms must be at most 60000, got {}", args.retry_ms);
    }
    if args.alloc_kb > 1 << 20 {
        bail!(
            "--alloc-kb must be at most 1048576 (1 GiB), got {}",
            args.alloc_kb
        );
    }
    let threads = match args.server_threads {
        Some(0) => bail!("--server-threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(2, |n| n.get()),
    };
    let cases = if args.cases.is_empty() {
        vec![
            Case::Warmup,
            Case::RetryAfter,
            Case::Errors,
            Case::Disconnects,
        ]
    } else {
        args.cases.clone()
    };
    Ok(Settings {
        before,
        during,
        after,
        threads,
        cases,
    })
}

/// Client and server share this process: each client's connection takes two descriptors.
fn check_fd_limit(clients: usize) -> anyhow::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit; the call only writes into it.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Ok(());
    }
    let needed = 2 * clients as u64 + 64;
    if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < needed {
        bail!(
            "{clients} clients need about {needed} file descriptors (client and server share \
             this process) but `ulimit -n` is {}: raise it or lower --clients",
            limit.rlim_cur
        );
    }
    Ok(())
}

/// Runs `disturb`.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let settings = check(&args)?;
    if let Some(dir) = &args.trace_limit {
        crate::limit_trace::create_dir(dir)?;
    }
    println!(
        "disturb: {} closed-loop clients over loopback on /work ({} ms of sleep, {} KiB; {} ms \
         pause after a 503), the adaptive layer{} on {} server threads; each case disturbed and \
         as a control run",
        args.clients,
        args.service_ms,
        args.alloc_kb,
        args.retry_ms,
        args.slo_ms
            .map(|ms| format!(" (latency objective {ms} ms)"))
            .unwrap_or_default(),
        settings.threads
    );
    let mut results = Vec::new();
    for (i, &case) in settings.cases.iter().enumerate() {
        results.push(run_pair(&args, &settings, case, i % 2 == 1)?);
    }
    print_table(&results, args.clients);
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "clients": args.clients,
            "service_ms": args.service_ms,
            "alloc_kb": args.alloc_kb,
            "retry_ms": args.retry_ms,
            "slo_ms": args.slo_ms,
            "server_threads": settings.threads,
            "sample_ms": SAMPLE_EVERY.as_millis() as u64,
            "cases": results,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("disturb: wrote {}", path.display());
    }
    Ok(())
}

/// One case: the control and the disturbed run (`disturbed_first` alternates the order).
fn run_pair(
    args: &Args,
    s: &Settings,
    case: Case,
    disturbed_first: bool,
) -> anyhow::Result<CaseResult> {
    let (during, window, reference) = match case {
        Case::Warmup => (
            Duration::ZERO,
            Window {
                from: s.before,
                to: s.before,
            },
            Reference::Control,
        ),
        Case::RetryAfter => (
            Duration::ZERO,
            Window {
                from: Duration::ZERO,
                to: Duration::ZERO,
            },
            Reference::Control,
        ),
        Case::Errors | Case::Disconnects => (
            s.during,
            Window {
                from: s.before,
                to: s.before + s.during,
            },
            Reference::OwnBefore,
        ),
    };
    let spec = |disturbed| RunSpec {
        case,
        disturbed,
        clients: args.clients,
        before: s.before,
        during,
        after: s.after,
        service: Duration::from_millis(args.service_ms),
        alloc_bytes: args.alloc_kb.saturating_mul(1024),
        server_threads: s.threads,
        retry: Duration::from_millis(args.retry_ms),
        layer: match args.slo_ms {
            Some(ms) => LayerChoice::AdaptiveSlo(ms),
            None => LayerChoice::Adaptive,
        },
    };
    let run = |disturbed: bool| {
        let which = if disturbed { "disturbed" } else { "control" };
        if let Some(dir) = &args.trace_limit {
            crate::limit_trace::write_to(&dir.join(format!("{}-{which}.log", case.name())))?;
        }
        run_case::run(spec(disturbed)).with_context(|| format!("{}: {which} run", case.name()))
    };
    let (control, disturbed) = if disturbed_first {
        let d = run(true)?;
        (run(false)?, d)
    } else {
        let c = run(false)?;
        (c, run(true)?)
    };
    let verdict = judge(
        &control.limits,
        &disturbed.limits,
        SAMPLE_EVERY,
        window,
        SETTLE,
        reference,
        args.clients,
    )
    .with_context(|| format!("{}: the runs were too short to judge", case.name()))?;
    let span = (window.to + SETTLE, spec(true).total());
    let met = verdict
        .back_after_s
        .is_some_and(|s| s <= SETTLE.as_secs_f64());
    Ok(CaseResult {
        case,
        disturbance_s: (window.from.as_secs_f64(), window.to.as_secs_f64()),
        control_ok_rps: ok_rps(&control, span),
        disturbed_ok_rps: ok_rps(&disturbed, span),
        verdict,
        met,
        control,
        disturbed,
    })
}

/// 2xx answers per second between two times of the run, from its 50 ms bins.
fn ok_rps(trace: &RunTrace, (from, to): (Duration, Duration)) -> f64 {
    let bin =
        |t: Duration| usize::try_from(t.as_nanos() / SAMPLE_EVERY.as_nanos()).unwrap_or(usize::MAX);
    let bins = trace
        .ok_per_bin
        .get(bin(from)..bin(to).min(trace.ok_per_bin.len()))
        .unwrap_or(&[]);
    let secs = bins.len() as f64 * SAMPLE_EVERY.as_secs_f64();
    bins.iter().sum::<u64>() as f64 / secs.max(1e-9)
}

fn print_table(results: &[CaseResult], clients: usize) {
    println!(
        "{:<12} {:>9} {:>7} {:>10} {:>15} {:>15} {:>15}",
        "case", "reference", "lowest", "back after", "median after", "steady/within", "ok/s after"
    );
    println!(
        "{:<12} {:>9} {:>7} {:>10} {:>15} {:>15} {:>15}",
        "", "", "", "", "control / dist.", "control / dist.", "control / dist."
    );
    for r in results {
        let v = &r.verdict;
        let back = v
            .back_after_s
            .map_or_else(|| "never".to_owned(), |s| format!("{s:.2} s"));
        println!(
            "{:<12} {:>9.0} {:>7} {:>10} {:>7.0} / {:>5.0} {:>6.0} % / {:>3.0} % {:>7.0} / {:>5.0}",
            r.case.name(),
            v.reference,
            v.lowest,
            back,
            v.control_median,
            v.disturbed_median,
            v.control_steady * 100.0,
            v.disturbed_within * 100.0,
            r.control_ok_rps,
            r.disturbed_ok_rps,
        );
    }
    println!("goals, this run:");
    for r in results {
        let v = &r.verdict;
        let wander = if v.control_steady < STEADY_ENOUGH {
            format!(
                " (the control's limit was within {:.0} % of its own median for only {:.0} % of \
                 the span: read with care)",
                BAND * 100.0,
                v.control_steady * 100.0
            )
        } else {
            String::new()
        };
        println!(
            "  [{}] {}: the limit is back within {:.0} % of its reference ({:.0}) to stay, within \
             {} s of the disturbance ending: {}{wander}",
            if r.met { "met   " } else { "MISSED" },
            r.case.name(),
            BAND * 100.0,
            v.reference,
            SETTLE.as_secs(),
            v.back_after_s
                .map_or_else(|| "never".to_owned(), |s| format!("after {s:.2} s")),
        );
    }
    for r in results {
        let failed = r.control.failed + r.disturbed.failed;
        if failed > 0 {
            println!(
                "  {}: {failed} exchanges failed on the wire or hit the deadline",
                r.case.name()
            );
        }
    }
    println!(
        "reference: the disturbed run's median limit in the 2 s before the disturbance (warmup, \
         retry-after: the control run's median over the span after); after: from 2 s after the \
         disturbance to the end; lowest: from the disturbance's start to 2 s after its end; \
         steady: the control's samples within 20 % of its own median; within: the disturbed \
         run's samples within 20 % of the reference (samples every 50 ms). Limits are judged \
         as the concurrency they allow: one above the {} clients counts as {} (the JSON's \
         traces are the raw limits).",
        clients, clients,
    );
}
