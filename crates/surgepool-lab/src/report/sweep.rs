//! The sweep section: SLO goodput and p99 latency of every swept fixed limit, with each
//! adaptive strategy marked where its limit settled, so the page shows at a glance whether
//! the adaptive limit found the knee that a hand-tuned number would.

use std::fmt::Write as _;

use super::chart::{color_for, Chart, Line, Overlay};
use crate::scenario_json::StrategyResult;

/// Strategies that choose their own limit (marked on the sweep).
const ADAPTIVE: [&str; 5] = ["adaptive", "layered", "aimd", "vegas", "gradient2"];

/// The limit a strategy settled at: the median of its sampled limits, or its final limit.
pub(crate) fn settled_limit(r: &StrategyResult) -> Option<f64> {
    let mut limits: Vec<u64> = r
        .series
        .iter()
        .map(|p| p.limit)
        .filter(|&l| l > 0)
        .collect();
    limits.sort_unstable();
    match limits.get(limits.len() / 2) {
        Some(&l) => Some(l as f64),
        None if r.final_limit > 0 => Some(r.final_limit as f64),
        None => None,
    }
}

/// The `<h2>Sweep</h2>` section: two charts against the fixed limit (log scale).
pub(crate) fn section(
    swept: &[&StrategyResult],
    main: &[&StrategyResult],
    slo_ms: f64,
) -> anyhow::Result<String> {
    let mut by_limit: Vec<(f64, &StrategyResult)> = swept
        .iter()
        .filter_map(|r| {
            let n: f64 = r.name.strip_prefix("fixed_")?.parse().ok()?;
            Some((n.log2(), *r))
        })
        .collect();
    by_limit.sort_by(|a, b| a.0.total_cmp(&b.0));
    let series = |name: &str, color, value: fn(&StrategyResult) -> f64| Line {
        name: name.to_owned(),
        color,
        points: by_limit.iter().map(|&(x, r)| (x, value(r))).collect(),
    };
    let adaptive: Vec<(usize, &StrategyResult)> = main
        .iter()
        .enumerate()
        .filter(|(_, r)| ADAPTIVE.contains(&r.name.as_str()) || r.name.starts_with("adaptive_"))
        .map(|(i, r)| (i, *r))
        .collect();
    let marks = |value: fn(&StrategyResult) -> f64| -> Vec<Line> {
        adaptive
            .iter()
            .filter_map(|&(i, r)| {
                let limit = settled_limit(r)?;
                Some(Line {
                    name: format!("{} (settled near {limit:.0})", r.name),
                    color: color_for(&r.name, i + 2),
                    points: vec![(limit.max(1.0).log2(), value(r))],
                })
            })
            .collect()
    };

    let mut goodput = Overlay {
        markers: marks(|r| r.slo_goodput_rps),
        ..Overlay::default()
    };
    for &(_, r) in &adaptive {
        goodput.hlines.push((
            r.slo_goodput_rps,
            format!("{} {:.0}/s", r.name, r.slo_goodput_rps),
        ));
    }
    let goodput_chart = Chart {
        title: format!("Sweep: SLO goodput ({slo_ms} ms) of each fixed limit"),
        x_label: "fixed limit N (log scale)".to_owned(),
        y_label: "req/s".to_owned(),
        log_y: false,
        x_pow2: true,
        legend: true,
        lines: vec![
            series("fixed_<N>: SLO goodput", color_for("fixed_", 0), |r| {
                r.slo_goodput_rps
            }),
            series("fixed_<N>: goodput", color_for("fixed_", 3), |r| {
                r.goodput_rps
            }),
        ],
    };
    let latency = Overlay {
        hlines: vec![(slo_ms, format!("SLO {slo_ms} ms"))],
        markers: marks(|r| r.latency_ms.p99),
        ..Overlay::default()
    };
    let latency_chart = Chart {
        title: "Sweep: p99 latency of each fixed limit".to_owned(),
        x_label: "fixed limit N (log scale)".to_owned(),
        y_label: "ms (log)".to_owned(),
        log_y: true,
        x_pow2: true,
        legend: true,
        lines: vec![series("fixed_<N>: p99", color_for("fixed_", 0), |r| {
            r.latency_ms.p99
        })],
    };
    let mut html = String::from(
        "<h2>Sweep</h2>\n<p class=\"note\">Each dot is a strategy that sets its own limit, \
         placed at the median of the limits sampled during its run; the dashed lines repeat \
         its SLO goodput across the chart.</p>\n<div class=\"grid\">\n",
    );
    let _ = writeln!(
        html,
        "<figure>{}</figure>\n<figure>{}</figure>\n</div>",
        goodput_chart.to_svg_with(&goodput)?,
        latency_chart.to_svg_with(&latency)?
    );
    Ok(html)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario_json::SeriesPoint;

    #[test]
    fn the_settled_limit_is_the_median_sample_or_the_final_limit() {
        let mut r = StrategyResult {
            final_limit: 9,
            ..StrategyResult::default()
        };
        assert_eq!(settled_limit(&r), Some(9.0));
        r.series = [0, 4, 100, 8, 6]
            .map(|limit| SeriesPoint {
                limit,
                ..SeriesPoint::default()
            })
            .to_vec();
        assert_eq!(settled_limit(&r), Some(8.0));
        assert_eq!(settled_limit(&StrategyResult::default()), None);
    }

    #[test]
    fn both_charts_mark_the_adaptive_strategy() {
        let fixed = |n: u64, slo: f64| StrategyResult {
            name: format!("fixed_{n}"),
            slo_goodput_rps: slo,
            ..StrategyResult::default()
        };
        let swept = [fixed(8, 100.0), fixed(64, 700.0), fixed(512, 300.0)];
        let adaptive = StrategyResult {
            name: "adaptive".into(),
            slo_goodput_rps: 650.0,
            final_limit: 60,
            ..StrategyResult::default()
        };
        let html = section(&swept.iter().collect::<Vec<_>>(), &[&adaptive], 60.0).unwrap();
        assert_eq!(html.matches("<svg").count(), 2);
        assert_eq!(html.matches("adaptive (settled near 60)").count(), 2);
        assert!(html.contains("SLO 60 ms"));
        assert!(html.contains("adaptive 650/s"));
    }
}
