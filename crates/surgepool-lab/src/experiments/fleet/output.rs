//! What `fleet` prints and writes: progress bars, the table, the goals, JSON and the report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use super::{Args, Row, Sample};
use crate::report::{color_for, Chart, Line};
use crate::table::{num, Align, Table};

/// A chart over time: (title, y label, value of a sample).
type Metric = (&'static str, &'static str, fn(&Sample) -> f64);

/// A progress bar of completed jobs (hidden when stderr is not a terminal).
pub(super) fn progress(label: &str, jobs: u64) -> ProgressBar {
    let bar = ProgressBar::new(jobs);
    if let Ok(style) = ProgressStyle::with_template("{prefix:>28} [{bar:24}] {pos}/{len} {elapsed}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_owned());
    bar
}

fn cells(rows: &[Row]) -> Vec<Vec<String>> {
    let mut out = vec![[
        "scenario",
        "strategy",
        "offered",
        "pushed",
        "local",
        "queued",
        "shed",
        "acked",
        "dead",
        "lost",
        "dups",
        "waiting",
        "jobs/s",
        "p50 ms",
        "p99 ms",
        "run p99 ms",
        "in-flight max",
        "in-flight late",
        "goodput/s",
        "drain s",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect::<Vec<_>>()];
    for r in rows {
        out.push(vec![
            r.scenario.to_owned(),
            r.strategy.clone(),
            r.offered.to_string(),
            r.pushed.to_string(),
            r.local.to_string(),
            r.queued.to_string(),
            r.shed.to_string(),
            r.acked.to_string(),
            r.dead.to_string(),
            r.lost.to_string(),
            r.duplicates.to_string(),
            r.waiting.to_string(),
            num(r.jobs_per_s),
            num(r.latency_ms.p50),
            num(r.latency_ms.p99),
            num(r.run_ms.p99),
            r.in_flight_max.to_string(),
            num(r.in_flight_mean_late),
            num(r.slo_goodput_rps),
            r.drain_s.map_or_else(|| "-".to_owned(), num),
        ]);
    }
    out
}

/// Prints the table on stdout.
pub(super) fn print_table(rows: &[Row]) {
    let cells = cells(rows);
    let columns: Vec<(&str, Align)> = cells[0]
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_str(), if i < 2 { Align::Left } else { Align::Right }))
        .collect();
    let mut table = Table::new(&columns);
    for row in &cells[1..] {
        table.push(row.clone());
    }
    println!("{table}");
    println!(
        "latency from intended arrival; run = time in the handler (downstream wait + service); \
         in-flight late = mean consumer in-flight after the slowdown began (slowdown rows)"
    );
}

/// Prints the goals that this run can check, as observed (not asserted).
pub(super) fn print_goals(rows: &[Row], service_ms: u64) {
    let find = |scenario: &str, prefix: &str| {
        rows.iter()
            .find(|r| r.scenario == scenario && r.strategy.starts_with(prefix))
    };
    if let (Some(local), Some(over)) = (
        find("spike", "local_only"),
        find("spike", "overflow_adaptive"),
    ) {
        println!(
            "spike: local_only shed {} of {}; overflow_adaptive shed {}, lost {}, duplicates {}, backlog drained {}",
            local.shed,
            local.offered,
            over.shed,
            over.lost,
            over.duplicates,
            over.drain_s.map_or_else(|| "not within the drain time".to_owned(), |s| format!("{s:.2} s after the last arrival")),
        );
    }
    if let (Some(a), Some(f)) = (
        find("slowdown", "overflow_adaptive"),
        find("slowdown", "overflow_fixed_"),
    ) {
        let bound = 3.0 * 3.0 * service_ms as f64;
        println!(
            "slowdown: run p99 adaptive {} ms vs {} {} ms (goal: adaptive <= 3 x new service = {} ms: {}); \
             in-flight late {} vs {}; goodput ratio {:.2} (goal >= 0.9)",
            num(a.run_ms.p99),
            f.strategy,
            num(f.run_ms.p99),
            num(bound),
            if a.run_ms.p99 <= bound { "met" } else { "NOT met" },
            num(a.in_flight_mean_late),
            num(f.in_flight_mean_late),
            if f.jobs_per_s > 0.0 { a.jobs_per_s / f.jobs_per_s } else { 0.0 },
        );
    }
    println!("figures from one run on this machine; they are void while other work shares it");
}

/// Writes the JSON document: the settings and one object per row.
pub(super) fn write_json(path: &Path, args: &Args, rows: &[Row]) -> anyhow::Result<()> {
    let doc = serde_json::json!({
        "experiment": "fleet",
        "scenario": {
            "consumers": args.consumers,
            "consumers_are": "processes (surgepool-lab fleet-consumer), one tokio worker each",
            "spike_rps": args.spike_rps,
            "spike_secs": args.spike_secs,
            "slowdown_rps": args.slowdown_rps,
            "slowdown_secs": args.slowdown_secs,
            "slowdown_factor": 3,
            "service_ms": args.service_ms,
            "downstream": args.downstream,
            "local_limit": args.local_limit,
            "fixed": args.fixed,
            "max_len": args.max_len,
            "slo_ms": args.slo().as_secs_f64() * 1000.0,
            "appendfsync": args.fsync,
        },
        "machine": crate::machine::Machine::detect().summary(),
        "strategies": rows,
    });
    let text = serde_json::to_string_pretty(&doc)?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes `dir/index.html`: backlog, in-flight work, the consumers' limits, completions and
/// latency over time, per scenario, and the table.
pub(super) fn write_report(dir: &Path, rows: &[Row]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>surgepool-lab fleet</title>\
         <style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right}\
         td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}</style></head><body>\
         <h1>surgepool-lab fleet</h1>",
    );
    let metrics: [Metric; 6] = [
        ("Backlog in Redis", "jobs", |s| s.backlog as f64),
        ("Consumers' in-flight work", "jobs", |s| s.in_flight as f64),
        (
            "Consumers' limit (summed): the most the next fetches take",
            "permits",
            |s| s.limit as f64,
        ),
        (
            "Fetch size: entries per XREADGROUP, all consumers, per 100 ms",
            "entries",
            |s| s.fetch_size,
        ),
        ("Completions per second", "jobs/s", |s| s.done_per_s),
        (
            "Highest latency from intended arrival, per 100 ms",
            "ms",
            |s| s.max_latency_ms,
        ),
    ];
    for scenario in ["spike", "slowdown"] {
        let here: Vec<&Row> = rows.iter().filter(|r| r.scenario == scenario).collect();
        if here.is_empty() {
            continue;
        }
        let _ = write!(html, "<h2>{scenario}</h2>");
        for (title, y, f) in metrics {
            let chart = Chart {
                title: format!("{title} ({scenario})"),
                x_label: "seconds".to_owned(),
                y_label: y.to_owned(),
                log_y: false,
                x_pow2: false,
                legend: true,
                lines: here
                    .iter()
                    .enumerate()
                    .map(|(i, r)| Line {
                        name: r.strategy.clone(),
                        color: color_for(&r.strategy, i),
                        points: r.series.iter().map(|s| (s.t_s, f(s))).collect(),
                    })
                    .collect(),
            };
            html.push_str(&chart.to_svg()?);
        }
    }
    html.push_str("<h2>Results</h2><table>");
    for (i, row) in cells(rows).iter().enumerate() {
        let tag = if i == 0 { "th" } else { "td" };
        html.push_str("<tr>");
        for c in row {
            let _ = write!(html, "<{tag}>{c}</{tag}>");
        }
        html.push_str("</tr>");
    }
    html.push_str("</table></body></html>\n");
    let path = dir.join("index.html");
    std::fs::write(&path, html).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
