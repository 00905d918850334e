//! Once a second: the process's resident memory, open file descriptors and threads, read
//! from `/proc/self`; and the slope of RSS over the run's second half: least squares with
//! its standard error, and Theil–Sen (the median of the slopes between every two points),
//! which a transient spike (a burst's buffers, returned a few seconds later) cannot tilt.

use std::fs;
use std::time::Instant;

use serde::Serialize;

use crate::rss::{self, Target};

/// One reading of the process.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Point {
    /// Seconds since the soak began.
    pub(crate) t_s: f64,
    pub(crate) rss_bytes: u64,
    pub(crate) fds: u64,
    pub(crate) threads: u64,
    /// Tasks the workloads saw end so far (all pools), to show the load kept running.
    pub(crate) tasks_done: u64,
}

/// Reads the process now; a field `/proc` cannot give is 0.
pub(crate) fn read(started: Instant, tasks_done: u64) -> Point {
    Point {
        t_s: started.elapsed().as_secs_f64(),
        rss_bytes: rss::rss_bytes(Target::SelfProcess).unwrap_or(0),
        fds: fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
        threads: fs::read_dir("/proc/self/task").map_or(0, |d| d.count() as u64),
        tasks_done,
    }
}

/// A least-squares line through the second half of a series, in units per minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Slope {
    /// The slope, per minute.
    pub(crate) per_min: f64,
    /// Its standard error, per minute: the noise the slope must be compared with.
    pub(crate) stderr_per_min: f64,
    /// Points the fit used.
    pub(crate) points: usize,
    /// The Theil–Sen slope, per minute: the median of the slopes between every two points
    /// (at most [`THEIL_SEN_POINTS`] of them, evenly spaced). Robust to outliers: up to
    /// about 29% of the points may be anywhere without moving it far.
    pub(crate) theil_sen_per_min: f64,
}

/// Theil–Sen looks at every pair: more points than this are thinned, evenly.
const THEIL_SEN_POINTS: usize = 1000;

/// The median of the pairwise slopes of `points` (x ascending).
fn theil_sen(points: &[(f64, f64)]) -> f64 {
    let step = points.len().div_ceil(THEIL_SEN_POINTS).max(1);
    let thin: Vec<(f64, f64)> = points.iter().step_by(step).copied().collect();
    let mut slopes: Vec<f64> = Vec::with_capacity(thin.len() * thin.len() / 2);
    for (i, a) in thin.iter().enumerate() {
        for b in &thin[i + 1..] {
            if b.0 > a.0 {
                slopes.push((b.1 - a.1) / (b.0 - a.0));
            }
        }
    }
    if slopes.is_empty() {
        return 0.0;
    }
    slopes.sort_by(f64::total_cmp);
    let mid = slopes.len() / 2;
    if slopes.len() % 2 == 1 {
        slopes[mid]
    } else {
        (slopes[mid - 1] + slopes[mid]) / 2.0
    }
}

/// The slope of `value` over the second half of `series` (the first half is warm-up: pools
/// grow, allocators fill their caches). `None` with fewer than 3 points in that half.
pub(crate) fn second_half_slope(series: &[Point], value: fn(&Point) -> f64) -> Option<Slope> {
    let end = series.last()?.t_s;
    let half: Vec<(f64, f64)> = series
        .iter()
        .filter(|p| p.t_s >= end / 2.0)
        .map(|p| (p.t_s / 60.0, value(p)))
        .collect();
    let n = half.len();
    if n < 3 {
        return None;
    }
    let nf = n as f64;
    let mean_x = half.iter().map(|p| p.0).sum::<f64>() / nf;
    let mean_y = half.iter().map(|p| p.1).sum::<f64>() / nf;
    let sxx: f64 = half.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = half.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let slope = sxy / sxx;
    let residuals: f64 = half
        .iter()
        .map(|p| (p.1 - (mean_y + slope * (p.0 - mean_x))).powi(2))
        .sum();
    let stderr = (residuals / (nf - 2.0) / sxx).sqrt();
    Some(Slope {
        per_min: slope,
        stderr_per_min: stderr,
        points: n,
        theil_sen_per_min: theil_sen(&half),
    })
}

/// The 95th percentile of `value` over `series` (0 when empty): what a count mostly stays
/// under, leaving out a transient (a thread that exists for one sample).
pub(crate) fn p95(series: &[Point], value: fn(&Point) -> u64) -> u64 {
    let mut v: Vec<u64> = series.iter().map(value).collect();
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[(v.len() - 1) * 95 / 100]
}

/// Smallest and largest of `value` over the second half of `series`.
pub(crate) fn second_half_range(series: &[Point], value: fn(&Point) -> u64) -> (u64, u64) {
    let end = series.last().map_or(0.0, |p| p.t_s);
    let half = series.iter().filter(|p| p.t_s >= end / 2.0).map(value);
    let (lo, hi) = half.fold((u64::MAX, 0), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        (0, 0)
    } else {
        (lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[f64]) -> Vec<Point> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| Point {
                t_s: i as f64,
                rss_bytes: v as u64,
                ..Point::default()
            })
            .collect()
    }

    #[test]
    fn slope_of_a_line_is_exact_and_ignores_the_first_half() {
        // Warm-up jump in the first half, then +10 bytes per second = 600 per minute.
        let mut values = vec![0.0, 5000.0, 9000.0, 9000.0];
        values.extend((0..8).map(|i| 1000.0 + 10.0 * f64::from(i)));
        let s = second_half_slope(&series(&values), |p| p.rss_bytes as f64).unwrap();
        assert!((s.per_min - 600.0).abs() < 1e-6, "{s:?}");
        assert!((s.theil_sen_per_min - 600.0).abs() < 1e-6, "{s:?}");
        assert!(s.stderr_per_min < 1e-6, "{s:?}");
    }

    #[test]
    fn a_transient_spike_tilts_least_squares_but_not_theil_sen() {
        // Flat at 1 MB, with a 3 MB spike over 30 of the last 60 of 300 points: the soak's
        // 10-minute run of 2026-12-03 had one like it (a burst's buffers).
        let values: Vec<f64> = (0..600)
            .map(|i| 1e6 + if (510..540).contains(&i) { 3e6 } else { 0.0 })
            .collect();
        let s = second_half_slope(&series(&values), |p| p.rss_bytes as f64).unwrap();
        assert!(
            s.per_min > 64.0 * 1024.0,
            "least squares sees growth: {s:?}"
        );
        assert_eq!(s.theil_sen_per_min, 0.0, "{s:?}");
        // A real leak, under the same spike, is still seen.
        let leak: Vec<f64> = values
            .iter()
            .enumerate()
            .map(|(i, v)| v + 100.0 * i as f64)
            .collect();
        let s = second_half_slope(&series(&leak), |p| p.rss_bytes as f64).unwrap();
        assert!((s.theil_sen_per_min - 6000.0).abs() < 1.0, "{s:?}");
    }

    #[test]
    fn p95_leaves_out_a_transient() {
        let mut pts = series(&[0.0; 100]);
        for p in &mut pts {
            p.threads = 7;
        }
        pts[50].threads = 9;
        assert_eq!(p95(&pts, |p| p.threads), 7);
        assert_eq!(p95(&[], |p| p.threads), 0);
    }

    #[test]
    fn flat_noise_has_a_slope_within_its_noise() {
        let values: Vec<f64> = (0..40)
            .map(|i| 1e6 + if i % 2 == 0 { 4096.0 } else { -4096.0 })
            .collect();
        let s = second_half_slope(&series(&values), |p| p.rss_bytes as f64).unwrap();
        assert!(s.per_min.abs() <= 3.0 * s.stderr_per_min, "{s:?}");
    }

    #[test]
    fn too_few_points_give_no_slope() {
        assert_eq!(
            second_half_slope(&series(&[1.0, 2.0]), |p| p.rss_bytes as f64),
            None
        );
        assert_eq!(second_half_range(&[], |p| p.fds), (0, 0));
    }
}
