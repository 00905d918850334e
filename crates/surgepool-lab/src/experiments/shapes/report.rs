//! The `shapes` results: rows, the goals computed from them, the table and the JSON.

use serde::Serialize;

use crate::machine::Machine;
use crate::run_stats::Summary;
use crate::table::{num, Align, Table};

/// Seed 000's Go figure for a shape (Apple M4, Go 1.24, `testing.B`, median of three).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeedGo {
    pub(crate) ns: f64,
    pub(crate) bytes: f64,
    pub(crate) allocs: f64,
}

/// ns/op over the measured runs.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct NsPerOp {
    pub(crate) min: f64,
    pub(crate) median: f64,
    pub(crate) max: f64,
}

/// One shape's row. A shape that failed has `error` and no figures.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub(crate) name: String,
    /// What one op is, and what the clock covers.
    pub(crate) op: String,
    pub(crate) ns_per_op: Option<NsPerOp>,
    pub(crate) bytes_per_op: Option<f64>,
    pub(crate) allocs_per_op: Option<f64>,
    /// Ops in each measured run (the adaptive `b.N`).
    pub(crate) iterations: Option<u64>,
    pub(crate) runs: Option<usize>,
    pub(crate) seed_go_ns: Option<f64>,
    pub(crate) seed_go_bytes_per_op: Option<f64>,
    pub(crate) seed_go_allocs_per_op: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

impl Row {
    pub(crate) fn new(
        name: String,
        op: String,
        seed: Option<SeedGo>,
        result: anyhow::Result<Summary>,
    ) -> Row {
        let (summary, error) = match result {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        Row {
            name,
            op,
            ns_per_op: summary.map(|s| NsPerOp {
                min: s.min_ns,
                median: s.median_ns,
                max: s.max_ns,
            }),
            bytes_per_op: summary.map(|s| s.bytes_per_op),
            allocs_per_op: summary.map(|s| s.allocs_per_op),
            iterations: summary.map(|s| s.ops_per_run),
            runs: summary.map(|s| s.runs),
            seed_go_ns: seed.map(|s| s.ns),
            seed_go_bytes_per_op: seed.map(|s| s.bytes),
            seed_go_allocs_per_op: seed.map(|s| s.allocs),
            error,
        }
    }

    fn median(&self) -> Option<f64> {
        self.ns_per_op.map(|n| n.median)
    }
}

/// How the run was configured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    pub(crate) preset: &'static str,
    pub(crate) target_ms: u64,
    pub(crate) runs: usize,
    /// Ops per run when fixed by `--ops` or `--smoke` (no warm-up); `null` when adaptive.
    pub(crate) fixed_ops: Option<u64>,
    /// Most spawned ops in flight before the producer waits for them (see the docs).
    pub(crate) window: u64,
    /// Capacity of the pools' channels and of surgepool's queues.
    pub(crate) channel_capacity: usize,
}

/// One of the per-op goals, judged on this run's medians.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Goal {
    pub(crate) goal: String,
    pub(crate) value: f64,
    pub(crate) target: f64,
    pub(crate) met: bool,
}

/// The whole report (the JSON of API.md, plus extra fields).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) machine: Machine,
    pub(crate) settings: Settings,
    pub(crate) shapes: Vec<Row>,
    pub(crate) goals: Vec<Goal>,
}

/// Allocation figures below this are "0 per op in steady state" (a few allocations per
/// run, e.g. a queue growing once, amortised over ≥ 10⁵ ops).
const ZERO_ALLOCS: f64 = 0.005;

/// Judges the per-op goals on the rows present (a goal whose rows are missing is skipped).
pub(crate) fn goals(rows: &[Row], cores: usize) -> Vec<Goal> {
    let find = |name: &str| rows.iter().find(|r| r.name == name);
    let median = |name: &str| find(name).and_then(Row::median);
    let mut goals = Vec::new();

    if let (Some(ours), Some(oneshot)) = (median("surgepool_pool_spawn"), median("spawn_oneshot")) {
        let ratio = ours / oneshot;
        goals.push(Goal {
            goal: "surgepool_pool_spawn / spawn_oneshot (ns/op)".into(),
            value: ratio,
            target: 0.25,
            met: ratio <= 0.25,
        });
    }
    let best_pool = rows
        .iter()
        .filter(|r| {
            r.name.starts_with("pool_shared_channel_")
                || r.name.starts_with("pool_per_worker_channel_")
        })
        .filter_map(|r| r.median().map(|m| (m, r.name.as_str())))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    if let (Some(ours), Some((best, name))) = (median("surgepool_pool_spawn"), best_pool) {
        let ratio = ours / best;
        goals.push(Goal {
            goal: format!("surgepool_pool_spawn / best hand-rolled tokio pool ({name})"),
            value: ratio,
            target: 1.0,
            met: ratio <= 1.0,
        });
    }
    let crossbeam = format!("crossbeam_pool_{cores}");
    if let (Some(ours), Some(cb)) = (median("surgepool_blocking"), median(&crossbeam)) {
        let ratio = ours / cb;
        goals.push(Goal {
            goal: format!("surgepool_blocking / {crossbeam} (ns/op)"),
            value: ratio,
            target: 1.5,
            met: ratio <= 1.5,
        });
    }
    // The allocation goals: none on the fire-and-forget path, one for submit + handle.
    // (`surgepool_blocking` has none: a closure pool must box, as `crossbeam_pool_boxed_*`.)
    for (name, target) in [("surgepool_pool_spawn", 0.0), ("surgepool_pool", 1.0)] {
        if let Some(allocs) = find(name).and_then(|r| r.allocs_per_op) {
            goals.push(Goal {
                goal: format!("{name} allocs/op"),
                value: allocs,
                target,
                met: allocs <= target + ZERO_ALLOCS,
            });
        }
    }
    goals
}

impl Report {
    /// The human report: machine, table, goals, notes.
    pub(crate) fn render(&self) -> String {
        let mut table = Table::new(&[
            ("shape", Align::Left),
            ("ns/op", Align::Right),
            ("min", Align::Right),
            ("max", Align::Right),
            ("B/op", Align::Right),
            ("allocs/op", Align::Right),
            ("Go ns/op", Align::Right),
            ("ops/run", Align::Right),
            ("one op", Align::Left),
        ]);
        for row in &self.shapes {
            let opt = |x: Option<f64>| x.map_or_else(|| "—".to_owned(), num);
            match (&row.ns_per_op, &row.error) {
                (Some(ns), _) => table.push(vec![
                    row.name.clone(),
                    num(ns.median),
                    num(ns.min),
                    num(ns.max),
                    opt(row.bytes_per_op),
                    opt(row.allocs_per_op),
                    opt(row.seed_go_ns),
                    row.iterations.map_or_else(String::new, |n| n.to_string()),
                    row.op.clone(),
                ]),
                (None, error) => table.push(vec![
                    row.name.clone(),
                    "error".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    opt(row.seed_go_ns),
                    String::new(),
                    format!("ERROR: {}", error.as_deref().unwrap_or("no result")),
                ]),
            }
        }
        let how = match self.settings.fixed_ops {
            Some(ops) => format!("{ops} ops per run, no warm-up"),
            None => format!("~{} ms per run after a warm-up", self.settings.target_ms),
        };
        let mut out = format!(
            "surgepool-lab shapes ({} preset: {} runs per shape, {how})\nmachine: {}\n\n{table}",
            self.settings.preset,
            self.settings.runs,
            self.machine.summary(),
        );
        out.push_str(
            "\nns/op: median (min, max) over the runs. B/op, allocs/op: counted by the lab's \
             allocator on all threads during the timed runs.\nGo ns/op: seed 000 on an Apple M4 \
             with Go 1.24 (pool_shared_channel_<cores> ← its GOMAXPROCS=10 pool); another machine \
             and language, so compare ratios, not absolute values.\n",
        );
        if !self.goals.is_empty() {
            out.push_str("\ngoals, on this run:\n");
            let mut g = Table::new(&[
                ("goal", Align::Left),
                ("value", Align::Right),
                ("target", Align::Right),
                ("", Align::Left),
            ]);
            for goal in &self.goals {
                g.push(vec![
                    goal.goal.clone(),
                    format!("{:.3}", goal.value),
                    format!("≤ {}", num(goal.target)),
                    if goal.met { "met" } else { "MISSED" }.into(),
                ]);
            }
            out.push_str(&g.to_string());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, median: f64, allocs: f64) -> Row {
        Row::new(
            name.into(),
            String::new(),
            None,
            Ok(Summary {
                min_ns: median,
                median_ns: median,
                max_ns: median,
                bytes_per_op: allocs * 16.0,
                allocs_per_op: allocs,
                ops_per_run: 10,
                runs: 5,
            }),
        )
    }

    #[test]
    fn goals_use_this_runs_baselines() {
        let rows = vec![
            row("spawn_oneshot", 400.0, 2.0),
            row("pool_shared_channel_2", 120.0, 0.0),
            row("pool_per_worker_channel_100", 90.0, 0.0),
            row("crossbeam_pool_2", 100.0, 0.0),
            row("surgepool_pool_spawn", 80.0, 0.0),
            row("surgepool_blocking", 200.0, 1.0),
            row("surgepool_pool", 300.0, 1.0),
        ];
        let g = goals(&rows, 2);
        let by = |prefix: &str| g.iter().find(|g| g.goal.starts_with(prefix)).unwrap();
        assert_eq!(by("surgepool_pool_spawn / spawn").value, 0.2);
        assert!(by("surgepool_pool_spawn / spawn").met);
        let best = by("surgepool_pool_spawn / best");
        assert!(best.goal.contains("pool_per_worker_channel_100"));
        assert!(best.met);
        assert!(!by("surgepool_blocking / crossbeam_pool_2").met);
        assert!(by("surgepool_pool_spawn allocs").met);
        assert!(g
            .iter()
            .all(|g| !g.goal.starts_with("surgepool_blocking allocs")));
        assert!(by("surgepool_pool allocs").met);
    }

    #[test]
    fn error_rows_have_no_figures_and_skip_goals() {
        let rows = vec![
            row("spawn_oneshot", 400.0, 2.0),
            Row::new(
                "surgepool_pool_spawn".into(),
                String::new(),
                None,
                Err(anyhow::anyhow!("closed")),
            ),
        ];
        assert!(goals(&rows, 2).is_empty());
        let json = serde_json::to_value(&rows[1]).unwrap();
        assert!(json["ns_per_op"].is_null());
        assert_eq!(json["error"], "closed");
    }
}
