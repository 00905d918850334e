//! The soak's HTML page: the table, the goals, and RSS, fd, thread and task charts over
//! time, with the lab's chart code. One self-contained file, as every lab report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::sample::Point;
use super::SoakReport;
use crate::report::{color_for, Chart, Line};

type Metric = (&'static str, &'static str, fn(&Point) -> f64);

const METRICS: [Metric; 4] = [
    ("Resident memory (RSS)", "bytes", |p| p.rss_bytes as f64),
    ("Open file descriptors", "fds", |p| p.fds as f64),
    ("Threads", "threads", |p| p.threads as f64),
    ("Tasks seen ending (cumulative, all parts)", "tasks", |p| {
        p.tasks_done as f64
    }),
];

/// Writes `dir/index.html`.
pub(super) fn write(
    dir: &Path,
    soak: &SoakReport,
    cells: &[Vec<String>],
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>surgepool soak</title>\
         <style>{CSS}</style></head><body>\n<h1>surgepool soak</h1>\n<p>{:.0} s of mixed load \
         &middot; {} cores</p>\n<h2>Results</h2>\n<table>\n",
        soak.duration_s, soak.machine.cores
    );
    for (i, row) in cells.iter().enumerate() {
        let tag = if i == 0 { "th" } else { "td" };
        html.push_str("<tr>");
        for cell in row {
            let _ = write!(html, "<{tag}>{}</{tag}>", esc(cell));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n<h2>Goals</h2>\n<ul>");
    for g in &soak.goals {
        let _ = write!(
            html,
            "<li><b class=\"{c}\">{c}</b> {}: {}</li>",
            esc(&g.goal),
            esc(&g.measured),
            c = if g.met { "met" } else { "missed" }
        );
    }
    html.push_str("</ul>\n<h2>Over time (sampled once a second)</h2>\n<div class=\"grid\">\n");
    for (title, unit, value) in METRICS {
        let chart = Chart {
            title: title.to_owned(),
            x_label: "seconds since the soak began".to_owned(),
            y_label: unit.to_owned(),
            log_y: false,
            x_pow2: false,
            legend: false,
            lines: vec![Line {
                name: title.to_owned(),
                color: color_for("adaptive", 0),
                points: soak.series.iter().map(|p| (p.t_s, value(p))).collect(),
            }],
        };
        let _ = writeln!(html, "<figure>{}</figure>", chart.to_svg()?);
    }
    html.push_str("</div>\n</body></html>\n");
    let path = dir.join("index.html");
    std::fs::write(&path, html).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}\
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ddd;padding:4px 8px;\
text-align:right}th{background:#f4f4f4}.met{color:#2a7d2a}.missed{color:#b22}\
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:12px}\
figure{margin:0;border:1px solid #eee}figure svg{display:block;width:100%;height:auto}";
