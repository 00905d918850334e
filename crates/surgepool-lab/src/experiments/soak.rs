//! `surgepool-lab soak`: a mixed workload for minutes (`--minutes N`, default 10; `--quick`
//! is 1), to show that nothing leaks and nothing is lost. See `soak/workload.rs` and
//! `soak/batcher.rs` for the load; once a second the process's RSS, open file descriptors and threads are sampled.
//!
//! Reported: the slope of RSS over the second half (bytes per minute: least squares with its
//! standard error, and Theil–Sen, which judges it: a transient spike cannot tilt it), fd and
//! thread ranges and 95th percentiles per half (judged on the percentiles), tasks `lost` (must be
//! 0), snapshots that broke the accounting identities (must be 0) and wrong outcomes (must
//! be 0). The run fails (exit code 1) when anything was lost, an identity broke or an
//! outcome was wrong, after writing its outputs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::machine::Machine;
use crate::table::{Align, Table};

mod batcher;
mod report;
mod sample;
mod workload;

use sample::{Point, Slope};
use workload::{Live, PartResult};

/// Arguments of `surgepool-lab soak`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// How long to run, in minutes.
    #[arg(long, default_value_t = 10)]
    pub(crate) minutes: u64,
    /// One minute instead of `--minutes`.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Run this many seconds instead (for smoke tests).
    #[arg(long, hide = true)]
    pub(crate) seconds: Option<u64>,
    /// Write the results as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Write an HTML report (RSS, fd and thread charts) into this directory.
    #[arg(long)]
    pub(crate) report: Option<PathBuf>,
}

/// The JSON written by `--json` (API.md: `rss_slope_bytes_per_min`, `lost`,
/// `identities_violations`, `series`).
#[derive(Debug, Serialize)]
pub(crate) struct SoakReport {
    pub(crate) machine: Machine,
    pub(crate) duration_s: f64,
    /// `null` when the run was too short for a fit (fewer than 3 samples in its second half).
    pub(crate) rss_slope_bytes_per_min: Option<f64>,
    pub(crate) rss_slope_stderr_bytes_per_min: Option<f64>,
    /// The Theil–Sen slope (median of pairwise slopes) over the same points: the judged one.
    pub(crate) rss_slope_theil_sen_bytes_per_min: Option<f64>,
    pub(crate) rss_mean_second_half_bytes: f64,
    /// [min, max] of the open fds and of the threads, in each half of the run.
    pub(crate) fds_first_half: (u64, u64),
    pub(crate) fds_second_half: (u64, u64),
    pub(crate) threads_first_half: (u64, u64),
    pub(crate) threads_second_half: (u64, u64),
    /// 95th percentiles of the open fds and of the threads, (first half, second half).
    pub(crate) fds_p95_halves: (u64, u64),
    pub(crate) threads_p95_halves: (u64, u64),
    pub(crate) lost: u64,
    pub(crate) identities_violations: u64,
    pub(crate) snapshots_checked: u64,
    /// Outcomes that contradict their input (the batcher: an item committed with another's
    /// output, a good item failed by a poison one): must be 0.
    pub(crate) wrong_outcomes: u64,
    pub(crate) parts: Vec<PartResult>,
    pub(crate) goals: Vec<Goal>,
    pub(crate) series: Vec<Point>,
}

/// One goal of issue 16, checked against this run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Goal {
    pub(crate) goal: String,
    pub(crate) met: bool,
    pub(crate) measured: String,
}

/// An RSS slope counts as flat within this, whatever its noise: a few pages a minute.
const FLAT_BYTES_PER_MIN: f64 = 64.0 * 1024.0;

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let duration = match (args.seconds, args.quick) {
        (Some(s), _) => Duration::from_secs(s),
        (None, true) => Duration::from_secs(60),
        (None, false) => Duration::from_secs(args.minutes.saturating_mul(60)),
    };
    anyhow::ensure!(!duration.is_zero(), "the soak needs at least one second");
    quiet_intended_panics();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    println!(
        "soak: {} s of mixed load (async pool, blocking pool, pool churn, tower layer over HTTP, batcher)",
        duration.as_secs()
    );
    let started = std::time::Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let series = Arc::new(Mutex::new(vec![sample::read(started, 0)]));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (series, stop, done) = (series.clone(), stop.clone(), done.clone());
        std::thread::Builder::new()
            .name("soak-sampler".into())
            .spawn(move || {
                let mut next = Duration::from_secs(1);
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(
                        next.saturating_sub(started.elapsed())
                            .min(Duration::from_millis(100)),
                    );
                    if started.elapsed() >= next {
                        let point = sample::read(started, done.load(Ordering::Relaxed));
                        series.lock().unwrap_or_else(|e| e.into_inner()).push(point);
                        next += Duration::from_secs(1);
                    }
                }
            })?
    };
    let parts = runtime.block_on(async {
        let until = tokio::time::Instant::now() + duration;
        let blocking = {
            let live = Live::new(done.clone());
            tokio::task::spawn_blocking(move || workload::blocking_pool(until, live))
        };
        let (a, c, h, b) = tokio::join!(
            workload::async_pool(until, Live::new(done.clone())),
            workload::churn(until, Live::new(done.clone())),
            workload::http(until, Live::new(done.clone())),
            batcher::batcher(until, Live::new(done.clone())),
        );
        anyhow::Ok(vec![a?, blocking.await??, c?, h?, b?])
    })?;
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    drop(runtime);
    let series = std::mem::take(&mut *series.lock().unwrap_or_else(|e| e.into_inner()));
    let soak = summarize(started.elapsed(), parts, series);
    let table = print(&soak);
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&soak)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
        println!("json: {}", path.display());
    }
    if let Some(dir) = &args.report {
        let path = report::write(dir, &soak, &table)?;
        println!("report: {}", path.display());
    }
    anyhow::ensure!(
        soak.lost == 0 && soak.identities_violations == 0 && soak.wrong_outcomes == 0,
        "{} tasks lost, {} snapshots broke an identity, {} wrong outcomes",
        soak.lost,
        soak.identities_violations,
        soak.wrong_outcomes
    );
    Ok(())
}

/// The pools catch the panics the workload provokes; the default hook would still print
/// each one. Only those are kept quiet: any other panic is printed as usual.
fn quiet_intended_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&workload::INTENDED_PANIC) {
            default(info);
        }
    }));
}

fn summarize(elapsed: Duration, parts: Vec<PartResult>, series: Vec<Point>) -> SoakReport {
    let slope = sample::second_half_slope(&series, |p| p.rss_bytes as f64);
    let end = series.last().map_or(0.0, |p| p.t_s);
    let (first, second): (Vec<Point>, Vec<Point>) = series.iter().partition(|p| p.t_s < end / 2.0);
    let range = |half: &[Point], value: fn(&Point) -> u64| {
        // `second_half_range` of a series that is only this half.
        let mut pts = half.to_vec();
        if let Some(last) = pts.last().copied() {
            pts.insert(
                0,
                Point {
                    t_s: last.t_s,
                    ..last
                },
            );
        }
        sample::second_half_range(&pts, value)
    };
    let rss_mean = if second.is_empty() {
        0.0
    } else {
        second.iter().map(|p| p.rss_bytes as f64).sum::<f64>() / second.len() as f64
    };
    let lost = parts.iter().map(|p| p.lost).sum();
    let identities_violations = parts.iter().map(|p| p.identities_violations).sum();
    let wrong_outcomes = parts.iter().map(|p| p.wrong_outcomes).sum();
    let mut soak = SoakReport {
        machine: Machine::detect(),
        duration_s: elapsed.as_secs_f64(),
        rss_slope_bytes_per_min: slope.map(|s| s.per_min),
        rss_slope_stderr_bytes_per_min: slope.map(|s| s.stderr_per_min),
        rss_slope_theil_sen_bytes_per_min: slope.map(|s| s.theil_sen_per_min),
        rss_mean_second_half_bytes: rss_mean,
        fds_first_half: range(&first, |p| p.fds),
        fds_second_half: range(&second, |p| p.fds),
        threads_first_half: range(&first, |p| p.threads),
        threads_second_half: range(&second, |p| p.threads),
        fds_p95_halves: (
            sample::p95(&first, |p| p.fds),
            sample::p95(&second, |p| p.fds),
        ),
        threads_p95_halves: (
            sample::p95(&first, |p| p.threads),
            sample::p95(&second, |p| p.threads),
        ),
        lost,
        identities_violations,
        snapshots_checked: parts.iter().map(|p| p.snapshots_checked).sum(),
        wrong_outcomes,
        parts,
        goals: Vec::new(),
        series,
    };
    soak.goals = goals(&soak, slope);
    soak
}

fn goals(soak: &SoakReport, slope: Option<Slope>) -> Vec<Goal> {
    let mut goals = vec![
        Goal {
            goal: "0 tasks lost".into(),
            met: soak.lost == 0,
            measured: format!("{} lost", soak.lost),
        },
        Goal {
            goal: "the identities hold at every snapshot".into(),
            met: soak.identities_violations == 0,
            measured: format!(
                "{} of {} snapshots broke one",
                soak.identities_violations, soak.snapshots_checked
            ),
        },
        Goal {
            goal: "every outcome is the right one (batcher: own output, only bad items fail)"
                .into(),
            met: soak.wrong_outcomes == 0,
            measured: format!("{} wrong", soak.wrong_outcomes),
        },
    ];
    goals.push(match slope {
        Some(s) => Goal {
            goal: format!(
                "RSS flat over the second half (|Theil–Sen slope| <= {} KiB/min)",
                FLAT_BYTES_PER_MIN / 1024.0
            ),
            met: s.theil_sen_per_min.abs() <= FLAT_BYTES_PER_MIN,
            measured: format!(
                "Theil–Sen {:+.0} bytes/min; least squares {:+.0} ± {:.0} bytes/min; {} samples",
                s.theil_sen_per_min, s.per_min, s.stderr_per_min, s.points
            ),
        },
        None => Goal {
            goal: "RSS flat over the second half".into(),
            met: false,
            measured: "run too short to fit a slope".into(),
        },
    });
    // Flat: the second half's 95th percentile stays within the first half's (warm-up
    // included). Percentiles, not peaks: a churned pool's thread that exists at one sample
    // is not growth. The ranges are reported beside them.
    for (what, p95, first, second) in [
        (
            "open fds",
            soak.fds_p95_halves,
            soak.fds_first_half,
            soak.fds_second_half,
        ),
        (
            "threads",
            soak.threads_p95_halves,
            soak.threads_first_half,
            soak.threads_second_half,
        ),
    ] {
        goals.push(Goal {
            goal: format!("{what} flat: the second half's 95th percentile within the first half's"),
            met: p95.1 <= p95.0,
            measured: format!(
                "p95 {} then {}; ranges {}..={} then {}..={}",
                p95.0, p95.1, first.0, first.1, second.0, second.1
            ),
        });
    }
    goals
}

/// Prints the table and the goals; returns the table's cells for the report.
fn print(soak: &SoakReport) -> Vec<Vec<String>> {
    const COLUMNS: [&str; 12] = [
        "part",
        "submitted",
        "accepted",
        "rejected",
        "completed",
        "panicked",
        "failed",
        "cancelled",
        "shed",
        "lost",
        "snapshots",
        "cycles",
    ];
    let columns: Vec<(&str, Align)> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, if i == 0 { Align::Left } else { Align::Right }))
        .collect();
    let mut table = Table::new(&columns);
    let mut cells = vec![COLUMNS.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>()];
    for p in &soak.parts {
        let row: Vec<String> = [
            p.name.clone(),
            p.submitted.to_string(),
            p.accepted.to_string(),
            p.rejected.to_string(),
            p.completed.to_string(),
            p.panicked.to_string(),
            p.failed.to_string(),
            p.cancelled.to_string(),
            p.shed.to_string(),
            p.lost.to_string(),
            format!("{}/{}", p.identities_violations, p.snapshots_checked),
            p.cycles.to_string(),
        ]
        .into();
        table.push(row.clone());
        cells.push(row);
    }
    println!("\n{}", Machine::detect().summary());
    println!("{table}");
    println!("(snapshots: broken/checked; cycles: pools built and shut down, or HTTP rounds)");
    for g in &soak.goals {
        println!(
            "  [{}] {}: {}",
            if g.met { "met" } else { "MISSED" },
            g.goal,
            g.measured
        );
    }
    cells
}
