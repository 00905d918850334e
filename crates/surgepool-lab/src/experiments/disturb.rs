//! `surgepool-lab disturb`: the adaptive admission layer under the disturbances that used
//! to leave its limit stuck or collapsed, over loopback, each against a control run.
//!
//! Each case runs twice, each time on a fresh lab server (`/work`: 20 ms of sleep holding
//! 500 KiB, behind `AdmissionLayer` with `Limit::adaptive()`) driven by closed-loop clients
//! that pause 2 ms after a 503: once **disturbed**, once as a **control** with the same load
//! and no disturbance. The knee is where the disturbed run's limit was (its median) in the
//! two seconds before the disturbance, or, for a disturbance from the start, the control run's median limit
//! from 2 s on; the goal is the disturbed run's limit back within 20 % of it within 2 s of
//! the disturbance ending.
//!
//! | case | disturbance | judged from |
//! |---|---|---|
//! | `warmup` | the clients call the cheap `/hello` for the first `--before-s`, then `/work` | the switch |
//! | `retry-after` | the clients honour the layer's `Retry-After: 1` (+0–50 % jitter) all along | the start |
//! | `errors` | 20 % of `/work` requests fail fast with a 500 for `--during-s` | its end |
//! | `disconnects` | one client in 8 gives up at 10 ms and closes its connection, for `--during-s` | its end |
//!
//! The same cases run as deterministic simulations on paused time in
//! `crates/surgepool/tests/limit_robustness.rs`; this is the real thing, with its noise: the
//! control run's share of samples within 20 % of its own median says how much the limit
//! wanders on this machine without any disturbance.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};

mod judge;
mod run_case;

use judge::{judge, Verdict};
use run_case::{RunSpec, RunTrace, SAMPLE_EVERY};

/// How long after the disturbance the knee is read, and the goal's deadline.
const SETTLE: Duration = Duration::from_secs(2);

/// The disturbances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Case {
    Warmup,
    RetryAfter,
    Errors,
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
    /// Seconds of load before the disturbance (`warmup`: of cheap `/hello` calls).
    #[arg(long, default_value_t = 4.0)]
    before_s: f64,
    /// Seconds the disturbance lasts (`errors`, `disconnects`).
    #[arg(long, default_value_t = 1.0)]
    during_s: f64,
    /// Seconds of load after it; the knee is read over the last `after-s` − 2.
    #[arg(long, default_value_t = 4.0)]
    after_s: f64,
    /// `/work`'s sleep, in milliseconds.
    #[arg(long, default_value_t = 20)]
    service_ms: u64,
    /// `/work`'s allocation, in KiB.
    #[arg(long, default_value_t = 500)]
    alloc_kb: usize,
    /// The server's runtime threads (default: the machine's parallelism); the clients run
    /// on one more thread.
    #[arg(long)]
    server_threads: Option<usize>,
    /// Write the traces and verdicts as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
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

fn seconds(name: &str, s: f64, max: f64) -> anyhow::Result<Duration> {
    if !(0.0..=max).contains(&s) {
        bail!("--{name} must be between 0 and {max} seconds, got {s}");
    }
    Ok(Duration::from_secs_f64(s))
}

/// Runs `disturb`.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let before = seconds("before-s", args.before_s, 600.0)?;
    let during = seconds("during-s", args.during_s, 600.0)?;
    let after = seconds("after-s", args.after_s, 600.0)?;
    if before <= Duration::from_secs(1) {
        bail!(
            "--before-s must be above 1 s: the knee is where the limit was from the end of its \
             first second (slow start) to the disturbance"
        );
    }
    if after <= SETTLE {
        bail!(
            "--after-s must be above {} s: the knee is read after that",
            SETTLE.as_secs()
        );
    }
    if !(1..=20_000).contains(&args.clients) {
        bail!(
            "--clients must be between 1 and 20000, got {}",
            args.clients
        );
    }
    if !(1..=60_000).contains(&args.service_ms) {
        bail!(
            "--service-ms must be between 1 and 60000, got {}",
            args.service_ms
        );
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
    println!(
        "disturb: {} closed-loop clients over loopback on /work ({} ms of sleep, {} KiB), the \
         adaptive layer on {threads} server threads; each case disturbed and as a control run",
        args.clients, args.service_ms, args.alloc_kb
    );
    let mut results = Vec::new();
    for case in cases {
        // (the disturbance's length, its start and end, whether the run's own level before
        // it is the knee)
        let (during, from, to, own) = match case {
            Case::Warmup => (Duration::ZERO, before, before, false),
            Case::RetryAfter => (Duration::ZERO, Duration::ZERO, Duration::ZERO, false),
            Case::Errors | Case::Disconnects => (during, before, before + during, true),
        };
        let spec = |disturbed| RunSpec {
            case,
            disturbed,
            clients: args.clients,
            before,
            during,
            after,
            service: Duration::from_millis(args.service_ms),
            alloc_bytes: args.alloc_kb.saturating_mul(1024),
            server_threads: threads,
        };
        let control =
            run_case::run(spec(false)).with_context(|| format!("{}: control run", case.name()))?;
        let disturbed =
            run_case::run(spec(true)).with_context(|| format!("{}: disturbed run", case.name()))?;
        let verdict = judge(
            &control.limits,
            &disturbed.limits,
            SAMPLE_EVERY,
            (from, to),
            SETTLE,
            own,
        )
        .with_context(|| format!("{}: the runs were too short to judge", case.name()))?;
        let span_from = (to + SETTLE).as_secs_f64().ceil() as usize;
        let ok_rps = |t: &RunTrace| {
            let s = t.ok_by_second.get(span_from..).unwrap_or(&[]);
            // The last entry is the partial second after the end, if any.
            let full = s.len().saturating_sub(1).max(1);
            s.iter().take(full).sum::<u64>() as f64 / full as f64
        };
        let met = verdict
            .back_after_s
            .is_some_and(|s| s <= SETTLE.as_secs_f64());
        results.push(CaseResult {
            case,
            disturbance_s: (from.as_secs_f64(), to.as_secs_f64()),
            control_ok_rps: ok_rps(&control),
            disturbed_ok_rps: ok_rps(&disturbed),
            verdict,
            met,
            control,
            disturbed,
        });
    }
    print_table(&results);
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "clients": args.clients,
            "service_ms": args.service_ms,
            "alloc_kb": args.alloc_kb,
            "server_threads": threads,
            "sample_ms": SAMPLE_EVERY.as_millis() as u64,
            "cases": results,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("disturb: wrote {}", path.display());
    }
    Ok(())
}

fn print_table(results: &[CaseResult]) {
    println!(
        "{:<12} {:>6} {:>7} {:>11} {:>16} {:>16} {:>16}",
        "case", "knee", "lowest", "back after", "median after", "within 20 %", "ok/s after"
    );
    println!(
        "{:<12} {:>6} {:>7} {:>11} {:>16} {:>16} {:>16}",
        "", "", "", "", "control / dist.", "control / dist.", "control / dist."
    );
    for r in results {
        let v = &r.verdict;
        let back = v
            .back_after_s
            .map_or_else(|| "never".to_owned(), |s| format!("{s:.2} s"));
        println!(
            "{:<12} {:>6.0} {:>7} {:>11} {:>7.0} / {:>6.0} {:>7.0} % / {:>3.0} % {:>7.0} / {:>6.0}",
            r.case.name(),
            v.knee,
            v.lowest,
            back,
            v.control_median,
            v.disturbed_median,
            v.control_within * 100.0,
            v.disturbed_within * 100.0,
            r.control_ok_rps,
            r.disturbed_ok_rps,
        );
    }
    println!("goals, this run:");
    for r in results {
        let v = &r.verdict;
        println!(
            "  [{}] {}: the limit is back within 20 % of the knee ({:.0}) within 2 s of the \
             disturbance ending: {}",
            if r.met { "met   " } else { "MISSED" },
            r.case.name(),
            v.knee,
            v.back_after_s
                .map_or_else(|| "never".to_owned(), |s| format!("after {s:.2} s")),
        );
    }
    println!(
        "knee: the disturbed run's median limit in the 2 s before the disturbance (warmup, \
         retry-after: the control run's median from 2 s after the start of the judged load); \
         lowest: the disturbed run's lowest limit during the disturbance (warmup: after the \
         switch; retry-after: over the whole run); after: from 2 s after the disturbance to the end; within 20 %: \
         share of samples (every 50 ms) near the knee there."
    );
}
