//! Issue 5's goals, checked against one run's results (so ratios compare strategies measured
//! in the same run, never numbers from another day).

use crate::scenario_json::{Goal, ScenarioReport, StrategyResult};

/// The goals that this run's strategies allow checking (a goal whose strategies did not run
/// is left out).
pub(crate) fn check(report: &ScenarioReport) -> Vec<Goal> {
    let find = |name: &str| report.strategies.iter().find(|s| s.name == name);
    let service = report.scenario.service_ms as f64;
    let mut goals = Vec::new();
    let surgepool: Vec<&StrategyResult> = report
        .strategies
        .iter()
        .filter(|s| s.name == "fixed" || s.name == "adaptive" || s.name.starts_with("fixed_"))
        .collect();
    if !surgepool.is_empty() {
        let lost: u64 = surgepool.iter().map(|s| s.lost).sum();
        goals.push(Goal {
            goal: "lost = 0 for every surgepool strategy".into(),
            measured: format!("{lost} lost"),
            met: lost == 0,
        });
    }
    let Some(adaptive) = find("adaptive") else {
        return goals;
    };
    // Issue 5 sets every goal for `--work sleep`, and only the goodput and p99 goals for
    // CPU work (queued CPU requests allocate nothing until they run, so RSS says little).
    let sleep = report.scenario.work == "sleep";
    if let (true, Some(naive)) = (sleep, find("naive")) {
        let ratio = adaptive.completed as f64 / (naive.completed.max(1)) as f64;
        goals.push(Goal {
            goal: "adaptive completes >= 4.6x what naive completes".into(),
            measured: format!(
                "{ratio:.2}x ({} vs {}{})",
                adaptive.completed,
                naive.completed,
                if naive.stopped_at_cap {
                    ", naive stopped at the cap"
                } else {
                    ""
                }
            ),
            met: ratio >= 4.6,
        });
        let rss = adaptive.peak_rss_bytes as f64 / (naive.peak_rss_bytes.max(1)) as f64;
        goals.push(Goal {
            goal: "adaptive peak RSS <= 1/10 of naive's".into(),
            measured: format!("{:.3} of naive's", rss),
            met: rss <= 0.1,
        });
    }
    if sleep {
        goals.push(Goal {
            goal: "adaptive mean latency <= 1.5x the service time".into(),
            measured: format!(
                "{:.2}x ({:.1} ms)",
                adaptive.latency_ms.mean / service,
                adaptive.latency_ms.mean
            ),
            met: adaptive.completed > 0 && adaptive.latency_ms.mean <= 1.5 * service,
        });
    }
    goals.push(Goal {
        goal: "adaptive p99 latency <= 3x the service time".into(),
        measured: format!(
            "{:.2}x ({:.1} ms)",
            adaptive.latency_ms.p99 / service,
            adaptive.latency_ms.p99
        ),
        met: adaptive.completed > 0 && adaptive.latency_ms.p99 <= 3.0 * service,
    });
    let best = report
        .strategies
        .iter()
        .filter(|s| s.name.starts_with("fixed_"))
        .max_by(|a, b| a.goodput_rps.total_cmp(&b.goodput_rps));
    if let Some(best) = best {
        let ratio = adaptive.goodput_rps / best.goodput_rps.max(1e-9);
        goals.push(Goal {
            goal: "adaptive goodput >= 0.9x the best swept fixed limit".into(),
            measured: format!(
                "{ratio:.2}x ({:.0}/s vs {} at {:.0}/s)",
                adaptive.goodput_rps, best.name, best.goodput_rps
            ),
            met: ratio >= 0.9,
        });
    }
    goals
}
