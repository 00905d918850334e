//! The HTML report: one self-contained `index.html` (inline SVG charts, inline CSS, no
//! JavaScript, nothing fetched), so it opens anywhere, offline, and can be attached to an
//! issue as one file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

mod chart;
mod sweep;

pub(crate) use chart::{color_for, Chart, Line, Overlay};
use plotters::style::RGBColor;

use crate::scenario_json::{ScenarioReport, SeriesPoint, StrategyResult};

/// Writes `dir/index.html` for an overload-shaped report (`overload`, `http`): charts over
/// time per strategy, the sweep when there is one, and the table (`cells`: header row first).
pub(crate) fn write_overload(
    dir: &Path,
    report: &ScenarioReport,
    cells: &[Vec<String>],
    title: &str,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let html = overload_page(report, cells, title)?;
    let path = dir.join("index.html");
    std::fs::write(&path, html).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The charts over time: (title, y label, log y, value).
type Metric = (&'static str, &'static str, bool, fn(&SeriesPoint) -> f64);

const METRICS: [Metric; 7] = [
    ("Goodput (completions per second)", "req/s", false, |p| {
        p.goodput_rps
    }),
    (
        "SLO goodput (completions within the SLO per second)",
        "req/s",
        false,
        |p| p.slo_goodput_rps,
    ),
    (
        "In flight (accepted, not finished: queued + running)",
        "requests",
        true,
        |p| p.in_flight as f64,
    ),
    ("Concurrency limit", "limit", true, |p| p.limit as f64),
    ("Resident memory (RSS)", "bytes", true, |p| {
        p.rss_bytes as f64
    }),
    (
        "Latency p50 of each 100 ms (intended arrival to completion)",
        "ms",
        true,
        |p| p.p50_ms,
    ),
    (
        "Latency p99 of each 100 ms (intended arrival to completion)",
        "ms",
        true,
        |p| p.p99_ms,
    ),
];

fn overload_page(
    report: &ScenarioReport,
    cells: &[Vec<String>],
    title: &str,
) -> anyhow::Result<String> {
    let s = &report.scenario;
    // Time charts show the named strategies; a sweep's many lines would drown them, so the
    // sweep gets its own chart (goodput against the limit).
    let (swept, main): (Vec<&StrategyResult>, Vec<&StrategyResult>) = report
        .strategies
        .iter()
        .partition(|r| r.name.starts_with("fixed_"));
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{t}</title><style>{CSS}</style></head><body>\n<h1>{t}</h1>\n\
         <p class=\"scenario\">{work} work &middot; {rps} req/s offered for {dur} s &middot; \
         {svc} ms service &middot; SLO {slo} ms &middot; {kb} KiB allocated per request &middot; \
         memory cap {cap} &middot; {cores} cores, {mem} RAM &middot; preset <b>{preset}</b>\
         {kind}</p>\n",
        slo = s.slo_ms,
        kind = if matches!(s.kind.as_str(), "" | "steady") {
            String::new()
        } else {
            format!(
                " &middot; load <b>{}</b> (changes at the midpoint)",
                esc(&s.kind)
            )
        },
        t = esc(title),
        work = esc(&s.work),
        rps = s.offered_rps,
        dur = s.duration_s,
        svc = s.service_ms,
        kb = s.alloc_kb,
        cap = bytes(s.mem_cap_bytes),
        cores = report.machine.cores,
        mem = bytes(report.machine.memory_bytes),
        preset = esc(&s.preset),
    );
    html.push_str("<h2>Results</h2>\n");
    html.push_str(&table_html(cells));
    if !report.goals.is_empty() {
        html.push_str("<h2>Goals, checked against this run</h2>\n<ul class=\"goals\">");
        for g in &report.goals {
            let _ = write!(
                html,
                "<li class=\"{}\"><b>{}</b> {}: {}</li>",
                if g.met { "met" } else { "missed" },
                if g.met { "met" } else { "missed" },
                esc(&g.goal),
                esc(&g.measured)
            );
        }
        html.push_str("</ul>\n");
    }
    html.push_str(
        "<p class=\"note\">Latency is measured from each request's <em>intended</em> arrival \
         (open-loop schedule) to its completion, queue wait included, over completed requests \
         only; rejected requests are counted as rejected. Peak RSS is read from \
         <code>/proc</code> 20 times a second; each strategy ran in its own process.</p>\n<ul class=\"config\">",
    );
    for r in &report.strategies {
        let _ = write!(html, "<li><b>{}</b>: {}", esc(&r.name), esc(&r.config));
        for n in &r.accounting_notes {
            let _ = write!(html, "<br><span class=\"warn\">note: {}</span>", esc(n));
        }
        html.push_str("</li>");
    }
    html.push_str("</ul>\n<h2>Over time</h2>\n<p class=\"legend\">");
    for (i, r) in main.iter().enumerate() {
        let RGBColor(red, green, blue) = color_for(&r.name, i);
        let _ = write!(
            html,
            "<span><i style=\"background:rgb({red},{green},{blue})\"></i>{}{}</span>",
            esc(&r.name),
            match r.stopped_at_cap_after_s {
                Some(at) => format!(" (stopped at the memory cap after {at:.1} s)"),
                None => String::new(),
            }
        );
    }
    html.push_str("</p>\n<div class=\"grid\">\n");
    // The change of `--scenario`: where the second half begins.
    let change_s = main
        .iter()
        .find_map(|r| r.phases.get(1))
        .filter(|_| !matches!(s.kind.as_str(), "" | "steady"))
        .map(|p| p.from_s);
    for (title, unit, log_y, value) in METRICS {
        let lines = main
            .iter()
            .enumerate()
            .filter(|(_, r)| title != "Concurrency limit" || r.series.iter().any(|p| p.limit > 0))
            .map(|(i, r)| Line {
                name: r.name.clone(),
                color: color_for(&r.name, i),
                // An interval with no completions has no latency: leave a gap, not a 0.
                points: r
                    .series
                    .iter()
                    .map(|p| (p.t_s, value(p)))
                    .filter(|&(_, v)| unit != "ms" || v > 0.0)
                    .collect(),
            })
            .collect();
        let chart = Chart {
            title: title.to_owned(),
            x_label: "seconds since arrivals began".to_owned(),
            y_label: if log_y {
                format!("{unit} (log)")
            } else {
                unit.to_owned()
            },
            log_y,
            x_pow2: false,
            legend: false,
            lines,
        };
        let mut overlay = Overlay::default();
        if unit == "ms" && s.slo_ms > 0.0 {
            overlay
                .hlines
                .push((s.slo_ms, format!("SLO {} ms", s.slo_ms)));
        }
        if let Some(at) = change_s {
            overlay.vlines.push((at, s.kind.clone()));
        }
        let _ = writeln!(html, "<figure>{}</figure>", chart.to_svg_with(&overlay)?);
    }
    html.push_str("</div>\n");
    if !swept.is_empty() {
        html.push_str(&sweep::section(&swept, &main, s.slo_ms)?);
    }
    html.push_str("</body></html>\n");
    Ok(html)
}

fn table_html(cells: &[Vec<String>]) -> String {
    let mut out = String::from("<table>\n");
    for (i, row) in cells.iter().enumerate() {
        out.push_str("<tr>");
        for (c, cell) in row.iter().enumerate() {
            let tag = if i == 0 { "th" } else { "td" };
            let class = if c == 0 { " class=\"name\"" } else { "" };
            let _ = write!(out, "<{tag}{class}>{}</{tag}>", esc(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.1} GB", n / 1e9)
    } else {
        format!("{:.0} MB", n / 1e6)
    }
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;\
color:#222;max-width:1400px}h1{font-size:22px;margin:0 0 6px}h2{font-size:18px;margin:22px 0 8px}\
.scenario{color:#555;margin:0 0 10px}table{border-collapse:collapse;font-size:13px}\
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right;white-space:nowrap}\
th{background:#f4f4f4}td.name,th.name{text-align:left;font-weight:600}\
tr:nth-child(even) td{background:#fafafa}.note{color:#555;font-size:13px;max-width:1000px}\
.config{font-size:13px;color:#444}.warn{color:#a33}\
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:12px}\
figure{margin:0;border:1px solid #eee}.goals{font-size:14px}.goals .met b{color:#2a7d2a}\
.goals .missed b{color:#b22}figure svg{display:block;width:100%;height:auto}figure.single{max-width:640px}\
.legend span{margin-right:18px;font-size:14px}.legend i{display:inline-block;width:22px;\
height:4px;margin:0 6px 3px 0;vertical-align:middle}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario_json::{Machine, Scenario};

    #[test]
    fn page_is_self_contained_and_escaped() {
        let mut r = StrategyResult {
            name: "adaptive".into(),
            config: "a <b> & c".into(),
            ..StrategyResult::default()
        };
        r.series = vec![SeriesPoint::default(); 3];
        let report = ScenarioReport {
            scenario: Scenario {
                preset: "quick".into(),
                work: "sleep".into(),
                offered_rps: 10,
                duration_s: 1.0,
                service_ms: 20,
                alloc_kb: 500,
                mem_cap_bytes: 1 << 30,
                drain_s: 1.0,
                worker_threads: 2,
                ..Scenario::default()
            },
            strategies: vec![r],
            machine: Machine {
                cores: 2,
                memory_bytes: 1 << 34,
                allocator: crate::alloc_count::ALLOCATOR.to_owned(),
            },
            goals: Vec::new(),
        };
        let html = overload_page(
            &report,
            &[vec!["strategy".into()], vec!["adaptive".into()]],
            "t",
        )
        .unwrap();
        assert!(html.contains("a &lt;b&gt; &amp; c"));
        assert!(!html.contains("<script"));
        assert!(!html.contains(" src=") && !html.contains("<link"));
        assert_eq!(html.matches("<svg").count(), METRICS.len());
    }

    #[test]
    fn latency_charts_carry_the_slo_and_a_changing_load_its_change() {
        let series = (0..20)
            .map(|i| SeriesPoint {
                t_s: i as f64 * 0.5,
                p50_ms: 20.0,
                p99_ms: 30.0,
                limit: 8,
                ..SeriesPoint::default()
            })
            .collect();
        let r = StrategyResult {
            name: "adaptive".into(),
            series,
            phases: vec![
                crate::scenario_json::Phase::default(),
                crate::scenario_json::Phase {
                    from_s: 5.0,
                    to_s: 10.0,
                    ..Default::default()
                },
            ],
            ..StrategyResult::default()
        };
        let report = ScenarioReport {
            scenario: Scenario {
                slo_ms: 60.0,
                kind: "slowdown".into(),
                ..Scenario::default()
            },
            strategies: vec![r],
            machine: Machine {
                cores: 2,
                memory_bytes: 1,
                allocator: crate::alloc_count::ALLOCATOR.to_owned(),
            },
            goals: Vec::new(),
        };
        let html = overload_page(&report, &[vec!["strategy".into()]], "t").unwrap();
        // Both latency charts (p50, p99) draw the SLO, above all of their data.
        assert_eq!(html.matches("SLO 60 ms\n</text>").count(), 2, "SLO lines");
        // Every chart over time marks the change.
        assert_eq!(html.matches("slowdown\n</text>").count(), METRICS.len());
        assert!(html.contains("SLO goodput (completions within the SLO per second)"));
    }
}
