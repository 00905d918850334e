//! One server's figures from what the generator saw: API.md's fields, the HTTP extras, and
//! the printed table.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::server_child::{LimitSample, Memory};
use crate::http_load::LoadReport;
use crate::scenario_json::{LatencyMs, SeriesPoint, StrategyResult};
use crate::table::{num, Align, Table};

pub(super) fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

pub(super) fn latency_ms(h: &Histogram<u64>) -> LatencyMs {
    if h.is_empty() {
        return LatencyMs::default();
    }
    LatencyMs {
        mean: h.mean() / 1000.0,
        p50: ms(h, 0.5),
        p99: ms(h, 0.99),
        p999: ms(h, 0.999),
        max: h.max() as f64 / 1000.0,
    }
}

pub(super) fn counts_json(counts: &BTreeMap<u16, u64>) -> Value {
    Value::Object(
        counts
            .iter()
            .map(|(c, n)| (c.to_string(), json!(n)))
            .collect(),
    )
}

/// API.md's fields for one server, from what the generator saw.
///
/// `offered` is the schedule; `rejected` the 503s; `accepted = offered - rejected`, which
/// splits into `completed` (2xx), `failed` (other statuses, connection errors, deadline
/// timeouts) and `cancelled` (never sent: every connection stayed busy until the run's time
/// bound). `lost` is what the independent counters fail to explain; it must be 0.
pub(super) fn strategy_result(
    name: &str,
    r: &LoadReport,
    mem: Option<&Memory>,
    server: &Value,
    asked_rps: f64,
    slo: Duration,
) -> StrategyResult {
    let rejected = r.status(503);
    let completed = r.ok();
    let answered: u64 = r.statuses.values().sum();
    let failed = answered - completed - rejected + r.errors + r.timeouts;
    let accepted = r.offered - rejected;
    let explained = completed + failed + r.unsent;
    let mut notes = Vec::new();
    if explained != accepted {
        notes.push(format!(
            "completed + failed + cancelled = {explained}, accepted = {accepted}"
        ));
    }
    let stopped_at_s = mem.and_then(|m| m.stopped_at_s);
    let ran_s = stopped_at_s.unwrap_or(r.elapsed.as_secs_f64());
    let admission = &server["admission"];
    let config = match admission["limit"].as_u64() {
        Some(limit) => format!(
            "{} layer, limit {limit} at the end",
            server["layer"].as_str().unwrap_or("admission")
        ),
        None => "no layer".to_owned(),
    };
    let series = r
        .ok_by_second
        .iter()
        .enumerate()
        .map(|(second, h)| SeriesPoint {
            t_s: second as f64 + 1.0,
            goodput_rps: h.len() as f64,
            slo_goodput_rps: r
                .ok_within_slo_by_second
                .get(second)
                .map_or(0.0, |&n| n as f64),
            in_flight: reading(mem, r, second).map_or(0, |s| s.in_flight),
            limit: reading(mem, r, second).map_or(0, |s| s.limit),
            rss_bytes: mem
                .and_then(|m| {
                    m.rss
                        .points
                        .iter()
                        .find(|p| p.t_s >= second as f64 + 1.0)
                        .map(|p| p.bytes)
                })
                .unwrap_or(0),
            p50_ms: ms(h, 0.5),
            p99_ms: ms(h, 0.99),
        })
        .collect();
    StrategyResult {
        name: name.to_owned(),
        offered: r.offered,
        achieved_rps: r.achieved_rps(),
        accepted,
        rejected,
        completed,
        failed,
        shed: 0,
        cancelled: r.unsent,
        lost: accepted.abs_diff(explained),
        goodput_rps: completed as f64 / ran_s.max(1e-9),
        slo_ms: slo.as_secs_f64() * 1000.0,
        slo_goodput_rps: r.ok_within_slo as f64 / ran_s.max(1e-9),
        within_slo: r.ok_within_slo,
        peak_rss_bytes: mem.map_or(0, |m| m.rss.peak),
        stopped_at_cap: stopped_at_s.is_some(),
        ran_s,
        latency_ms: latency_ms(&r.ok_latency),
        config,
        asked_rps,
        scheduled: r.offered,
        generator_lag_ms: 0.0,
        stopped_at_cap_after_s: stopped_at_s,
        timed_out: false,
        rejection_latency_ms: latency_ms(&r.shed_from_intended),
        final_limit: admission["limit"].as_u64().unwrap_or(0),
        accounting_notes: notes,
        series,
        phases: Vec::new(),
    }
}

/// The typed fields, plus the HTTP extras: status codes, errors, timeouts, the server's own
/// counters, and latencies measured from the actual send.
pub(super) fn strategy_json(result: &StrategyResult, r: &LoadReport, server: &Value) -> Value {
    let mut v = serde_json::to_value(result).unwrap_or(Value::Null);
    v["status_counts"] = counts_json(&r.statuses);
    v["errors"] = json!(r.errors);
    v["timeouts"] = json!(r.timeouts);
    v["unsent"] = json!(r.unsent);
    v["service_latency_ms"] = json!(latency_ms(&r.ok_service));
    v["shed_service_latency_ms"] = json!(latency_ms(&r.shed_latency));
    v["send_lag_ms"] = json!(latency_ms(&r.send_lag));
    v["within_slo_from_send"] = json!(r.ok_within_slo_from_send);
    v["slo_goodput_from_send_rps"] = json!(slo_goodput_from_send(result, r));
    v["server"] = server.clone();
    v
}

const COLUMNS: [(&str, Align); 15] = [
    ("server", Align::Left),
    ("offered", Align::Right),
    ("achieved/s", Align::Right),
    ("completed", Align::Right),
    ("503", Align::Right),
    ("failed", Align::Right),
    ("never sent", Align::Right),
    ("lost", Align::Right),
    ("mean ms", Align::Right),
    ("p50 ms", Align::Right),
    ("p99 ms", Align::Right),
    ("max ms", Align::Right),
    ("goodput/s", Align::Right),
    ("SLO goodput/s", Align::Right),
    ("peak RSS", Align::Right),
];

/// The table's cells, header row first (for the text table and the HTML report).
pub(super) fn cells(rows: &[(&StrategyResult, &LoadReport)]) -> Vec<Vec<String>> {
    let mut out = vec![COLUMNS.iter().map(|(h, _)| (*h).to_owned()).collect()];
    for (s, _) in rows {
        let rss = match s.stopped_at_cap_after_s {
            Some(t) => format!("cap at {t:.1} s"),
            None if s.peak_rss_bytes == 0 => "-".to_owned(),
            None => format!("{} MiB", num(s.peak_rss_bytes as f64 / 1048576.0)),
        };
        out.push(vec![
            s.name.clone(),
            s.offered.to_string(),
            num(s.achieved_rps),
            s.completed.to_string(),
            s.rejected.to_string(),
            s.failed.to_string(),
            s.cancelled.to_string(),
            s.lost.to_string(),
            num(s.latency_ms.mean),
            num(s.latency_ms.p50),
            num(s.latency_ms.p99),
            num(s.latency_ms.max),
            num(s.goodput_rps),
            num(s.slo_goodput_rps),
            rss,
        ]);
    }
    out
}

pub(super) fn print_table(rows: &[(&StrategyResult, &LoadReport)]) {
    let mut table = Table::new(&COLUMNS);
    for row in cells(rows).into_iter().skip(1) {
        table.push(row);
    }
    println!("\n{table}");
    for (s, r) in rows {
        let codes: Vec<String> = r
            .statuses
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        println!(
            "{:<8} status codes {{{}}}, connection errors {}, deadline timeouts {}",
            s.name,
            codes.join(", "),
            r.errors,
            r.timeouts,
        );
        if let Some(cpu) = s.config.split("; ").find(|c| c.starts_with("CPU")) {
            println!("{:<8} {cpu}", "");
        }
        println!(
            "{:<8} from the actual send: 2xx p50 {} ms, p99 {} ms; 503 p50 {} ms, p99 {} ms",
            "",
            num(ms(&r.ok_service, 0.5)),
            num(ms(&r.ok_service, 0.99)),
            num(ms(&r.shed_latency, 0.5)),
            num(ms(&r.shed_latency, 0.99)),
        );
        println!(
            "{:<8} sent after its intended time by: p50 {} ms, p99 {} ms; SLO goodput from the \
             actual send {}/s",
            "",
            num(ms(&r.send_lag, 0.5)),
            num(ms(&r.send_lag, 0.99)),
            num(slo_goodput_from_send(s, r)),
        );
    }
    let behind: Vec<&str> = rows
        .iter()
        .filter(|(_, r)| generator_behind(r))
        .map(|(s, _)| s.name.as_str())
        .collect();
    let from_send = |name: &str| {
        rows.iter()
            .find(|(s, _)| s.name == name)
            .map(|(s, r)| slo_goodput_from_send(s, r))
    };
    let best_fixed = rows
        .iter()
        .filter(|(s, _)| s.name.starts_with("fixed_"))
        .map(|(s, r)| (s.name.as_str(), slo_goodput_from_send(s, r)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    if let (Some(layered), Some((best, fixed))) = (from_send("layered"), best_fixed) {
        println!(
            "SLO goodput from the actual send (the server's part alone): layered {}/s, the best \
             fixed layer {best} {}/s: {:.2}x",
            num(layered),
            num(fixed),
            layered / fixed.max(1e-9)
        );
    }
    if !behind.is_empty() {
        println!(
            "the generator fell behind its schedule for {} (median send lag above {GENERATOR_BEHIND_MS} \
             ms): their latencies from the intended time, and so their SLO goodput, include its \
             own backlog",
            behind.join(", ")
        );
    }
}

/// 2xx responses per second within the SLO of their actual send (the server's part alone),
/// over the same span as `result`'s SLO goodput.
pub(super) fn slo_goodput_from_send(result: &StrategyResult, r: &LoadReport) -> f64 {
    r.ok_within_slo_from_send as f64 / result.ran_s.max(1e-9)
}

/// Whether the generator fell behind its schedule in `r`'s run.
pub(super) fn generator_behind(r: &LoadReport) -> bool {
    ms(&r.send_lag, 0.5) > GENERATOR_BEHIND_MS
}

/// A median send lag above this many ms says the generator, not only the server, set the
/// latencies from the intended time.
const GENERATOR_BEHIND_MS: f64 = 5.0;

pub(super) fn print_growth(bare: &StrategyResult, layered: &StrategyResult) {
    let p99 = |s: &StrategyResult| {
        s.series
            .iter()
            .map(|p| {
                if p.goodput_rps > 0.0 {
                    num(p.p99_ms)
                } else {
                    "-".to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rss = |s: &StrategyResult| {
        s.series
            .iter()
            .map(|p| num(p.rss_bytes as f64 / 1048576.0))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("\nover time (one value per second of the schedule):");
    println!("  bare    2xx p99 ms: {}", p99(bare));
    println!("  layered 2xx p99 ms: {}", p99(layered));
    println!("  bare    RSS MiB:    {}", rss(bare));
    println!("  layered RSS MiB:    {}", rss(layered));
}

/// The median; the mean of the middle two for an even count; 0 for none.
pub(super) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The server's last `/stats` reading in second `second` of the schedule.
fn reading(mem: Option<&Memory>, r: &LoadReport, second: usize) -> Option<LimitSample> {
    let end = r.start + Duration::from_secs(second as u64 + 1);
    mem?.limits.iter().rev().find(|s| s.at <= end).copied()
}
