//! The human table, in seed 003's terms. (A small printer of its own: the shared table module
//! lands on another branch.)

use std::fmt::Write as _;

use crate::scenario_json::{ScenarioReport, StrategyResult};

const HEADERS: [&str; 14] = [
    "strategy",
    "offered",
    "achieved/s",
    "completed",
    "rejected",
    "shed+canc",
    "lost",
    "goodput/s",
    "SLO goodput/s",
    "peak RSS",
    "mean ms",
    "p50 ms",
    "p99 ms",
    "stopped",
];

/// Formats a byte count as MB/GB (decimal, as the seed reports).
pub(crate) fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else {
        format!("{:.0} MB", n / 1e6)
    }
}

fn row(r: &StrategyResult) -> [String; 14] {
    [
        r.name.clone(),
        r.offered.to_string(),
        format!("{:.0}", r.achieved_rps),
        r.completed.to_string(),
        r.rejected.to_string(),
        (r.shed + r.cancelled).to_string(),
        r.lost.to_string(),
        format!("{:.0}", r.goodput_rps),
        format!("{:.0}", r.slo_goodput_rps),
        bytes(r.peak_rss_bytes),
        format!("{:.1}", r.latency_ms.mean),
        format!("{:.1}", r.latency_ms.p50),
        format!("{:.1}", r.latency_ms.p99),
        match (r.stopped_at_cap_after_s, r.timed_out) {
            (Some(s), _) => format!("at cap after {s:.1} s"),
            (None, true) => "timed out".to_owned(),
            (None, false) => "no".to_owned(),
        },
    ]
}

/// The table rows as strings (header first), for the text table and the HTML report.
pub(crate) fn cells(report: &ScenarioReport) -> Vec<Vec<String>> {
    let mut rows = vec![HEADERS.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>()];
    rows.extend(report.strategies.iter().map(|r| row(r).to_vec()));
    rows
}

/// Each half's figures (requests belong to the half in which they were due).
fn phases(report: &ScenarioReport) -> String {
    let mut rows = vec![[
        "strategy",
        "1st: SLO gp/s",
        "p99 ms",
        "mean limit",
        "2nd: SLO gp/s",
        "p99 ms",
        "mean limit",
    ]
    .map(str::to_owned)
    .to_vec()];
    for r in report.strategies.iter().filter(|r| r.phases.len() == 2) {
        let mut row = vec![r.name.clone()];
        for p in &r.phases {
            row.push(format!("{:.0}", p.slo_goodput_rps));
            row.push(format!("{:.1}", p.latency_ms.p99));
            row.push(if p.mean_limit > 0.0 {
                format!("{:.0}", p.mean_limit)
            } else {
                "-".to_owned()
            });
        }
        rows.push(row);
    }
    let slos: Vec<String> = report
        .strategies
        .iter()
        .find(|r| r.phases.len() == 2)
        .map(|r| {
            r.phases
                .iter()
                .map(|p| format!("{} ms", p.slo_ms))
                .collect()
        })
        .unwrap_or_default();
    let mut out = format!(
        "each half (the change comes at the midpoint of the arrivals; SLO {}):\n",
        slos.join(" then ")
    );
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                if c == 0 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "  {}", line.join("  ").trim_end());
    }
    out
}

/// The whole table as text, with the scenario on top.
pub(crate) fn render(report: &ScenarioReport) -> String {
    let s = &report.scenario;
    let mut out = format!(
        "overload ({} preset, {} load): {} work, {} req/s offered for {} s, {} ms service, {} KiB per request, SLO {} ms, memory cap {}\n\n",
        s.preset,
        if s.kind.is_empty() { "steady" } else { &s.kind },
        s.work,
        s.offered_rps,
        s.duration_s,
        s.service_ms,
        s.alloc_kb,
        s.slo_ms,
        bytes(s.mem_cap_bytes)
    );
    let rows = cells(report);
    let widths: Vec<usize> = (0..HEADERS.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for (i, r) in rows.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                if c == 0 || c == HEADERS.len() - 1 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
        if i == 0 {
            let total = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
            let _ = writeln!(out, "{}", "-".repeat(total));
        }
    }
    if !matches!(s.kind.as_str(), "" | "steady") {
        out.push('\n');
        out.push_str(&phases(report));
    }
    if !report.goals.is_empty() {
        out.push_str("\ngoals, this run:\n");
        for g in &report.goals {
            let mark = if g.met { "met   " } else { "MISSED" };
            let _ = writeln!(out, "  [{mark}] {}: {}", g.goal, g.measured);
        }
    }
    out.push_str("\nlatency: intended arrival to completion, queue wait included, completed requests only;\nSLO goodput: completions within the SLO of their intended arrival, per second.\n");
    for r in &report.strategies {
        let _ = writeln!(out, "  {:<10} {}", r.name, r.config);
        for n in &r.accounting_notes {
            let _ = writeln!(out, "  {:<10}   note: {n}", "");
        }
    }
    out
}
