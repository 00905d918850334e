//! The parent's side: run one strategy in a child, show progress, and turn what the child
//! said (or, when it was killed, its last sample) into a [`StrategyResult`].

use std::time::Duration;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};

use super::messages::{ChildLine, Sample};
use super::params::Params;
use super::strategy::Strategy;
use crate::child::{self, Limits, Observer};
use crate::scenario_json::{SeriesPoint, StrategyResult};

/// Time a child may take beyond its arrivals and drain before it is killed as hung
/// (start-up, the runtime's shutdown, and a pool dropping a large queue).
const TIMEOUT_SLACK: Duration = Duration::from_secs(30);

struct Watch {
    bar: ProgressBar,
    samples: Vec<Sample>,
    result: Option<StrategyResult>,
    garbage: Vec<String>,
    rss_bytes: u64,
}

impl Observer for Watch {
    fn line(&mut self, line: &str) {
        match serde_json::from_str::<ChildLine>(line) {
            Ok(ChildLine::Sample(s)) => {
                self.bar.set_position((s.t_s * 1000.0) as u64);
                self.bar.set_message(format!(
                    "done {:>9}  in flight {:>7}  limit {:>5}  RSS {:>6}",
                    s.counts.completed,
                    s.in_flight,
                    if s.limit == 0 {
                        "-".to_owned()
                    } else {
                        s.limit.to_string()
                    },
                    super::table::bytes(self.rss_bytes.max(s.rss_bytes)),
                ));
                self.samples.push(s);
            }
            Ok(ChildLine::Result(r)) => self.result = Some(*r),
            Err(_) => self.garbage.push(line.to_owned()),
        }
    }

    fn tick(&mut self, _elapsed: Duration, rss_bytes: u64) {
        self.rss_bytes = rss_bytes;
    }
}

/// Runs `strategy` with `params` in a child process capped at `mem_cap_bytes`.
pub(crate) fn run_strategy(
    strategy: Strategy,
    params: &Params,
    mem_cap_bytes: u64,
) -> anyhow::Result<StrategyResult> {
    let name = strategy.to_string();
    let total_ms = ((params.duration_s + params.drain_s) * 1000.0) as u64;
    let bar = ProgressBar::new(total_ms);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:24}] {elapsed:>4} {msg}")
            .expect("static template is valid")
            .progress_chars("=> "),
    );
    bar.set_prefix(name.clone());
    let mut watch = Watch {
        bar,
        samples: Vec::new(),
        result: None,
        garbage: Vec::new(),
        rss_bytes: 0,
    };
    let limits = Limits {
        mem_cap_bytes,
        timeout: params.duration() + params.drain() + TIMEOUT_SLACK,
    };
    let outcome = child::run_self(&params.child_args(&name), limits, &mut watch)?;

    let mut result = match (
        watch.result.take(),
        outcome.stopped_at_cap,
        outcome.timed_out,
    ) {
        (Some(r), None, false) if outcome.status.success() => r,
        (_, Some(_), _) | (_, _, true) => match watch.samples.last() {
            Some(last) => from_last_sample(strategy, params, last),
            None => {
                bail!("strategy {name} was stopped (memory cap or timeout) before its first sample")
            }
        },
        _ => bail!(
            "strategy {name}: child exited with {} and no result{}",
            outcome.status,
            if watch.garbage.is_empty() {
                String::new()
            } else {
                format!(" (it printed: {})", watch.garbage.join(" | "))
            }
        ),
    };
    // The parent's own RSS readings are the authority on peak memory; the child's are
    // a second source (the larger one counts).
    result.peak_rss_bytes = result.peak_rss_bytes.max(outcome.rss.peak);
    if let Some(at) = outcome.stopped_at_cap {
        result.stopped_at_cap = true;
        result.stopped_at_cap_after_s = Some(at.as_secs_f64());
    }
    result.timed_out = outcome.timed_out;
    result.series = watch
        .samples
        .iter()
        .map(|s| SeriesPoint {
            t_s: s.t_s,
            goodput_rps: s.goodput_rps,
            slo_goodput_rps: s.slo_goodput_rps,
            in_flight: s.in_flight,
            limit: s.limit,
            rss_bytes: s.rss_bytes,
            p50_ms: s.p50_ms,
            p99_ms: s.p99_ms,
        })
        .collect();
    if let Some(at) = outcome.stopped_at_cap {
        // The kill's own reading, so the RSS chart ends at the cap.
        result.series.push(SeriesPoint {
            t_s: at.as_secs_f64(),
            rss_bytes: outcome.rss.peak,
            ..result.series.last().copied().unwrap_or_default()
        });
    }
    for phase in &mut result.phases {
        phase.mean_limit = mean_limit(&watch.samples, phase.from_s, phase.to_s);
    }
    let status = if result.stopped_at_cap {
        format!(
            "stopped at the memory cap after {:.1} s",
            outcome.ran.as_secs_f64()
        )
    } else if result.timed_out {
        "killed at the timeout".to_owned()
    } else {
        format!(
            "{} completed, {} rejected, {:.0}/s",
            result.completed, result.rejected, result.goodput_rps
        )
    };
    watch.bar.finish_with_message(status);
    Ok(result)
}

/// A killed child left no result: build one from its last sample. Work in flight when the
/// process was killed is counted as cancelled (it died with the process), so the identities
/// still hold; the note says so.
fn from_last_sample(strategy: Strategy, params: &Params, last: &Sample) -> StrategyResult {
    let c = last.counts;
    let killed = c.in_flight();
    let ran = last.t_s.max(1e-9);
    StrategyResult {
        name: strategy.to_string(),
        offered: c.accepted + c.rejected,
        // Arrivals stop at the schedule's end even if the process lived on (a hung drain).
        achieved_rps: last.offered as f64 / ran.min(params.duration_s).max(1e-9),
        accepted: c.accepted,
        rejected: c.rejected,
        completed: c.completed,
        failed: c.failed,
        shed: c.shed,
        cancelled: c.cancelled + killed,
        lost: 0,
        goodput_rps: c.completed as f64 / ran,
        slo_ms: params.slo_ms,
        slo_goodput_rps: c.within_slo as f64 / ran,
        within_slo: c.within_slo,
        peak_rss_bytes: last.rss_bytes,
        stopped_at_cap: false,
        ran_s: ran,
        latency_ms: last.latency_ms,
        config: strategy.describe(params.queue),
        asked_rps: params.rps as f64,
        scheduled: (params.rps as f64 * params.duration_s).round() as u64,
        generator_lag_ms: 0.0,
        stopped_at_cap_after_s: None,
        timed_out: false,
        rejection_latency_ms: Default::default(),
        final_limit: last.limit,
        accounting_notes: vec![format!(
            "process killed: counts are from its last sample at {ran:.1} s; the {killed} \
             requests in flight then died with the process and are counted as cancelled; \
             latency covers only the requests that completed"
        )],
        series: Vec::new(),
        // The halves' counters died with the process.
        phases: Vec::new(),
    }
}

/// The mean of the limits sampled in `[from_s, to_s)` (0 when no sample fell there).
fn mean_limit(samples: &[Sample], from_s: f64, to_s: f64) -> f64 {
    let limits: Vec<f64> = samples
        .iter()
        .filter(|s| s.t_s >= from_s && s.t_s < to_s)
        .map(|s| s.limit as f64)
        .collect();
    if limits.is_empty() {
        0.0
    } else {
        limits.iter().sum::<f64>() / limits.len() as f64
    }
}
