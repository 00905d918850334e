//! The `http` experiment's goals, checked against one run (every ratio compares servers
//! measured in the same run).

use crate::http_load::LoadReport;
use crate::scenario_json::{Goal, StrategyResult};
use crate::table::num;

use super::results::ms;

/// What the goals are judged on.
pub(super) struct Judged<'a> {
    /// The bare server's capacity, requests/s.
    pub(super) capacity: f64,
    /// The offered rate, requests/s.
    pub(super) rate: f64,
    pub(super) service_ms: f64,
    pub(super) bare: &'a StrategyResult,
    pub(super) layered: &'a StrategyResult,
    pub(super) layered_report: &'a LoadReport,
    /// The swept `fixed_<N>` layers (empty without `--sweep`).
    pub(super) swept: Vec<&'a StrategyResult>,
    /// (bare, layered) `/hello` requests/s.
    pub(super) hello: (f64, f64),
}

/// Below this fraction of capacity the layer must shed (almost) nothing.
const BELOW_CAPACITY: f64 = 0.75;

pub(super) fn check(j: &Judged<'_>) -> Vec<Goal> {
    let mut goals = Vec::new();
    let layered = j.layered;
    let overloaded = j.rate > j.capacity;
    if overloaded {
        goals.push(Goal {
            goal: format!("layered p99 <= 3x the service time ({} ms)", j.service_ms),
            measured: format!("{} ms", num(layered.latency_ms.p99)),
            met: layered.completed > 0 && layered.latency_ms.p99 <= 3.0 * j.service_ms,
        });
        goals.push(Goal {
            goal: "layered goodput >= 0.9x the bare server's capacity".into(),
            measured: format!(
                "{}/s vs capacity {}/s",
                num(layered.goodput_rps),
                num(j.capacity)
            ),
            met: layered.goodput_rps >= 0.9 * j.capacity,
        });
        let ratio = layered.slo_goodput_rps / j.bare.slo_goodput_rps.max(1e-9);
        goals.push(Goal {
            goal: "layered SLO goodput >= 2x the bare server's".into(),
            measured: format!(
                "{ratio:.2}x ({}/s vs {}/s, SLO {} ms)",
                num(layered.slo_goodput_rps),
                num(j.bare.slo_goodput_rps),
                layered.slo_ms
            ),
            met: ratio >= 2.0,
        });
        let shed_p99 = ms(&j.layered_report.shed_latency, 0.99);
        goals.push(Goal {
            goal: "503s answered within 1 ms at p99 (from the actual send)".into(),
            measured: format!("{} ms", num(shed_p99)),
            met: j.layered_report.status(503) > 0 && shed_p99 <= 1.0,
        });
    }
    if j.rate <= BELOW_CAPACITY * j.capacity {
        let shed = layered.rejected as f64 / layered.offered.max(1) as f64;
        goals.push(Goal {
            goal: "below capacity the layer sheds < 0.1% of requests".into(),
            measured: format!(
                "{:.3}% ({} of {} at {:.2}x capacity)",
                shed * 100.0,
                layered.rejected,
                layered.offered,
                j.rate / j.capacity
            ),
            met: shed < 0.001,
        });
    }
    if let Some(best) = j
        .swept
        .iter()
        .max_by(|a, b| a.slo_goodput_rps.total_cmp(&b.slo_goodput_rps))
    {
        let ratio = layered.slo_goodput_rps / best.slo_goodput_rps.max(1e-9);
        goals.push(Goal {
            goal: "layered SLO goodput >= 0.9x the best fixed layer's".into(),
            measured: format!(
                "{ratio:.2}x ({}/s vs {} at {}/s)",
                num(layered.slo_goodput_rps),
                best.name,
                num(best.slo_goodput_rps)
            ),
            met: ratio >= 0.9,
        });
    }
    let (bare_hello, layered_hello) = j.hello;
    let overhead = 1.0 - layered_hello / bare_hello.max(1e-9);
    goals.push(Goal {
        goal: "hello overhead of the layer <= 5%".into(),
        measured: format!("{:.1}%", overhead * 100.0),
        met: overhead <= 0.05,
    });
    goals
}

/// Prints the goals and the facts beside them.
pub(super) fn print(goals: &[Goal], j: &Judged<'_>, deadline_ms: u64) {
    println!("\ngoals, this run:");
    if j.rate <= j.capacity {
        println!(
            "  (offered load {:.2}x the measured capacity: the overload goals do not apply)",
            j.rate / j.capacity
        );
    }
    for g in goals {
        let mark = if g.met { "met   " } else { "MISSED" };
        println!("  [{mark}] {}: {}", g.goal, g.measured);
    }
    let bare = j.bare;
    let answered: Vec<_> = bare.series.iter().filter(|p| p.goodput_rps > 0.0).collect();
    let (first, last) = (answered.first(), answered.last());
    println!(
        "  bare server under the same load: 2xx p99 {} ms in its first second -> {} ms in its last, peak RSS {} MiB{}, {} failed",
        first.map_or("-".to_owned(), |p| num(p.p99_ms)),
        last.map_or("-".to_owned(), |p| num(p.p99_ms)),
        num(bare.peak_rss_bytes as f64 / 1048576.0),
        if bare.stopped_at_cap { " (stopped at the cap)" } else { "" },
        bare.failed,
    );
    println!(
        "  no request hangs: each got a response, an error or its {deadline_ms} ms deadline ({} deadline timeouts at the layered server)",
        j.layered_report.timeouts
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, slo_goodput: f64) -> StrategyResult {
        StrategyResult {
            name: name.into(),
            offered: 1000,
            completed: 900,
            slo_goodput_rps: slo_goodput,
            goodput_rps: slo_goodput,
            ..StrategyResult::default()
        }
    }

    fn report() -> LoadReport {
        crate::http_load::tests_support::empty_report()
    }

    #[test]
    fn overload_goals_compare_with_the_bare_server_and_the_best_fixed_layer() {
        let (bare, layered) = (result("bare", 100.0), result("layered", 900.0));
        let swept = [result("fixed_64", 950.0), result("fixed_256", 1200.0)];
        let r = report();
        let j = Judged {
            capacity: 1000.0,
            rate: 3000.0,
            service_ms: 20.0,
            bare: &bare,
            layered: &layered,
            layered_report: &r,
            swept: swept.iter().collect(),
            hello: (100.0, 99.0),
        };
        let goals = check(&j);
        let find = |s: &str| goals.iter().find(|g| g.goal.contains(s)).unwrap();
        assert!(find("2x the bare").met);
        let best = find("best fixed layer");
        assert!(!best.met && best.measured.contains("fixed_256"), "{best:?}");
        assert!(!goals.iter().any(|g| g.goal.contains("below capacity")));
    }

    #[test]
    fn below_capacity_only_the_shedding_goal_applies() {
        let bare = result("bare", 500.0);
        let mut layered = result("layered", 500.0);
        layered.rejected = 2; // 0.2% of 1000
        let r = report();
        let j = Judged {
            capacity: 1000.0,
            rate: 500.0,
            service_ms: 20.0,
            bare: &bare,
            layered: &layered,
            layered_report: &r,
            swept: Vec::new(),
            hello: (100.0, 99.0),
        };
        let goals = check(&j);
        let below = goals
            .iter()
            .find(|g| g.goal.contains("below capacity"))
            .unwrap();
        assert!(!below.met, "{below:?}");
        assert!(!goals.iter().any(|g| g.goal.contains("2x the bare")));
    }
}
