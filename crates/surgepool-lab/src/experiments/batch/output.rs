//! The batch experiment's outputs: the table, the goals of issue 12, JSON and the HTML
//! report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::json;

use super::measure::StrategyResult;
use super::Args;
use crate::report::{color_for, Chart, Line};
use crate::table::{num, Align, Table};

fn table(results: &[StrategyResult]) -> Table {
    let mut t = Table::new(&[
        ("db", Align::Left),
        ("strategy", Align::Left),
        ("items", Align::Right),
        ("committed", Align::Right),
        ("failed", Align::Right),
        ("lost", Align::Right),
        ("in table", Align::Right),
        ("offered/s", Align::Right),
        ("rows/s", Align::Right),
        ("× per_row", Align::Right),
        ("p50 ms", Align::Right),
        ("p99 ms", Align::Right),
        ("batch mean", Align::Right),
        ("batch max", Align::Right),
    ]);
    for r in results {
        let per_row = find(results, r.db, "per_row_autocommit").map(|p| p.rows_per_s);
        t.push(vec![
            r.db.to_owned(),
            r.name.clone(),
            r.items.to_string(),
            r.committed.to_string(),
            r.failed.to_string(),
            r.lost.to_string(),
            r.rows_in_table.to_string(),
            if r.offered_rps > 0.0 {
                num(r.offered_rps)
            } else {
                "—".into()
            },
            num(r.rows_per_s),
            per_row.map_or("—".into(), |p| num(r.rows_per_s / p)),
            num(r.item_latency_ms.p50),
            num(r.item_latency_ms.p99),
            num(r.batch_size.mean),
            r.batch_size.max.to_string(),
        ]);
    }
    t
}

fn find<'a>(results: &'a [StrategyResult], db: &str, name: &str) -> Option<&'a StrategyResult> {
    results.iter().find(|r| r.db == db && r.name == name)
}

fn named<'a>(
    results: &'a [StrategyResult],
    db: &'a str,
    prefix: &'a str,
) -> impl Iterator<Item = &'a StrategyResult> + 'a {
    results
        .iter()
        .filter(move |r| r.db == db && r.name.starts_with(prefix))
}

/// The goals of issue 12, per database, as (goal, figure, met) lines.
fn goals(results: &[StrategyResult]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for db in ["sqlite", "postgres"] {
        let Some(per_row) = find(results, db, "per_row_autocommit") else {
            continue;
        };
        let ratio = |r: &StrategyResult| r.rows_per_s / per_row.rows_per_s.max(1e-9);
        let named = |prefix: &'static str| named(results, db, prefix);
        if let Some(tx) = named("tx_batch_").find(|r| !r.name.contains("pipelined")) {
            out.push(
                json!({"db": db, "goal": "seed claim: tx_batch ÷ per_row (seed's shape)",
                            "figure": ratio(tx), "met": ratio(tx) >= 50.0}),
            );
        }
        if let Some(tx) = named("tx_batch_pipelined_").next() {
            out.push(
                json!({"db": db, "goal": "seed claim: tx_batch ÷ per_row (pipelined)",
                            "figure": ratio(tx), "met": ratio(tx) >= 50.0}),
            );
        }
        let best_batched = results
            .iter()
            .filter(|r| r.db == db && r.name != "per_row_autocommit" && r.name != "batcher_light")
            .map(ratio)
            .fold(0.0, f64::max);
        out.push(json!({"db": db, "goal": "best batched ≥ 20 × per_row",
                        "figure": best_batched, "met": best_batched >= 20.0}));
        let best_fixed =
            named("batcher_fixed_").max_by(|a, b| a.rows_per_s.total_cmp(&b.rows_per_s));
        if let (Some(b), Some(f)) = (find(results, db, "batcher"), best_fixed) {
            let rps = b.rows_per_s / f.rows_per_s.max(1e-9);
            let p99 = b.item_latency_ms.p99 / f.item_latency_ms.p99.max(1e-9);
            out.push(
                json!({"db": db, "goal": format!("batcher rows/s ≥ 0.9 × best fixed ({})", f.name),
                            "figure": rps, "met": rps >= 0.9}),
            );
            out.push(
                json!({"db": db, "goal": format!("batcher p99 ≤ 2 × best fixed's ({})", f.name),
                            "figure": p99, "met": p99 <= 2.0}),
            );
        }
        if let Some(light) = find(results, db, "batcher_light") {
            let p99 = light.item_latency_ms.p99 / per_row.item_latency_ms.p99.max(1e-9);
            out.push(
                json!({"db": db, "goal": "light load: batcher p99 ≤ 2 × a single-row commit's p99",
                            "figure": p99, "met": p99 <= 2.0}),
            );
        }
    }
    out
}

/// Prints the table and the goals.
pub(crate) fn print(results: &[StrategyResult]) {
    println!("{}", table(results));
    for g in goals(results) {
        println!(
            "{:<8} {:<62} {:>8}  {}",
            g["db"].as_str().unwrap_or(""),
            g["goal"].as_str().unwrap_or(""),
            num(g["figure"].as_f64().unwrap_or(f64::NAN)),
            if g["met"].as_bool() == Some(true) {
                "met"
            } else {
                "NOT met"
            }
        );
    }
}

/// Writes API.md's JSON (plus `goals`).
pub(crate) fn write_json(
    path: &Path,
    args: &Args,
    results: &[StrategyResult],
) -> anyhow::Result<()> {
    let db = match args.db {
        super::DbChoice::Sqlite => "sqlite",
        super::DbChoice::Postgres => "postgres",
        super::DbChoice::Both => "both",
    };
    let doc = json!({
        "scenario": {"items": args.items, "db": db, "tx_size": args.tx_size,
                     "sweep": args.sweep, "light_items": args.light_items},
        "strategies": results,
        "goals": goals(results),
    });
    let text = serde_json::to_string_pretty(&doc)?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes `dir/index.html`: the table, and the sweep's rows/s and p99 against the batch
/// size, with the default batcher beside it.
pub(crate) fn write_report(dir: &Path, results: &[StrategyResult]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut html = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>surgepool-lab batch</title><style>body{font-family:sans-serif;margin:2em}\
         pre{font-size:13px}</style></head><body>\n<h1>surgepool-lab batch: group commit on \
         real databases</h1>\n",
    );
    type Figure = fn(&StrategyResult) -> f64;
    let charts: [(&str, &str, Figure); 2] = [
        ("Rows per second against the batch size", "rows/s", |r| {
            r.rows_per_s
        }),
        ("Item p99 latency against the batch size", "ms", |r| {
            r.item_latency_ms.p99
        }),
    ];
    for (title, unit, value) in charts {
        let mut lines = Vec::new();
        for db in ["sqlite", "postgres"] {
            let mut sweep: Vec<(f64, f64)> = results
                .iter()
                .filter(|r| r.db == db)
                .filter_map(|r| {
                    let n: f64 = r.name.strip_prefix("batcher_fixed_")?.parse().ok()?;
                    Some((n.log2(), value(r)))
                })
                .collect();
            if sweep.is_empty() {
                continue;
            }
            sweep.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (lo, hi) = (sweep[0].0, sweep[sweep.len() - 1].0);
            let name = format!("batcher_fixed ({db})");
            lines.push(Line {
                color: color_for(&name, lines.len()),
                name,
                points: sweep,
            });
            if let Some(b) = find(results, db, "batcher") {
                let name = format!("batcher, defaults ({db})");
                let points = vec![(lo, value(b)), (hi, value(b))];
                lines.push(Line {
                    color: color_for(&name, lines.len()),
                    name,
                    points,
                });
            }
        }
        let chart = Chart {
            title: title.to_owned(),
            x_label: "batch size (log scale)".to_owned(),
            y_label: unit.to_owned(),
            log_y: false,
            x_pow2: true,
            legend: true,
            lines,
        };
        let _ = writeln!(
            html,
            "<h2>{title}</h2>\n<figure>{}</figure>",
            chart.to_svg()?
        );
    }
    let _ = writeln!(html, "<h2>Results</h2>\n<pre>{}</pre>", table(results));
    let mut goal_lines = String::new();
    for g in goals(results) {
        let _ = writeln!(
            goal_lines,
            "{} — {}: {} ({})",
            g["db"].as_str().unwrap_or(""),
            g["goal"].as_str().unwrap_or(""),
            num(g["figure"].as_f64().unwrap_or(f64::NAN)),
            if g["met"].as_bool() == Some(true) {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    let _ = writeln!(
        html,
        "<h2>Goals</h2>\n<pre>{goal_lines}</pre>\n</body></html>"
    );
    let path = dir.join("index.html");
    std::fs::write(&path, html).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
