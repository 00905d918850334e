//! Per-op figures the way Go's `testing.B` makes them: grow the iteration count until one run
//! lasts at least a target time, then time several runs of that size and report the median,
//! min and max of ns/op, with the allocations counted over the same runs.
//!
//! A *run* executes a body for `ops` operations. The body decides what one operation is and
//! starts and stops the clock itself (with a [`Stopwatch`]), so that set-up (a runtime, a
//! pool, a buffer) stays outside the timed region while everything the operations cause
//! (spawned work finishing, allocations on other threads) stays inside.

use std::time::{Duration, Instant};

use crate::alloc_count::{self, AllocSnapshot};

/// What one timed run measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Operations done (may round up the requested count, e.g. to whole batches).
    pub(crate) ops: u64,
    /// Wall-clock time of the timed region.
    pub(crate) elapsed: Duration,
    /// Allocations made by all threads during the timed region.
    pub(crate) allocs: AllocSnapshot,
}

/// Starts the clock and the allocation count; [`Stopwatch::stop`] ends both.
#[derive(Debug)]
pub(crate) struct Stopwatch {
    allocs: AllocSnapshot,
    start: Instant,
}

impl Stopwatch {
    /// Snapshots the allocation counters, then reads the clock (so the snapshot's own cost
    /// is not timed).
    pub(crate) fn start() -> Stopwatch {
        let allocs = alloc_count::snapshot();
        Stopwatch {
            allocs,
            start: Instant::now(),
        }
    }

    /// Reads the clock, then the allocation counters.
    pub(crate) fn stop(self, ops: u64) -> Sample {
        let elapsed = self.start.elapsed();
        let allocs = alloc_count::snapshot().since(&self.allocs);
        Sample {
            ops,
            elapsed,
            allocs,
        }
    }
}

/// How long and how often to measure one body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// A measured run should last about this long; warm-up grows the count until one does.
    pub(crate) target: Duration,
    /// Measured runs after the warm-up.
    pub(crate) runs: usize,
    /// Never run more operations than this at once (memory and time guard).
    pub(crate) max_ops: u64,
    /// Skip the warm-up and run exactly this many operations (the smoke test's tiny mode).
    pub(crate) fixed_ops: Option<u64>,
}

/// Where a measurement is, for progress reporting.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Phase {
    /// Warm-up run with this many operations.
    WarmUp(u64),
    /// Measured run `index` (0-based) of `runs`.
    Run { index: usize, runs: usize },
}

/// The figures of one body over all measured runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Summary {
    /// Fastest run's ns/op.
    pub(crate) min_ns: f64,
    /// Median run's ns/op (the mean of the middle two for an even count).
    pub(crate) median_ns: f64,
    /// Slowest run's ns/op.
    pub(crate) max_ns: f64,
    /// Bytes allocated per op, over all measured runs.
    pub(crate) bytes_per_op: f64,
    /// Allocations per op, over all measured runs.
    pub(crate) allocs_per_op: f64,
    /// Operations in each measured run.
    pub(crate) ops_per_run: u64,
    /// Number of measured runs.
    pub(crate) runs: usize,
}

/// Warms up, then measures `plan.runs` runs of `body`.
pub(crate) fn measure<B, P>(plan: &Plan, mut body: B, mut progress: P) -> anyhow::Result<Summary>
where
    B: FnMut(u64) -> anyhow::Result<Sample>,
    P: FnMut(Phase),
{
    anyhow::ensure!(plan.runs > 0, "at least one run is needed");
    let ops = match plan.fixed_ops {
        Some(ops) => ops.max(1),
        None => warm_up(plan, &mut body, &mut progress)?,
    };
    let mut samples = Vec::with_capacity(plan.runs);
    for index in 0..plan.runs {
        progress(Phase::Run {
            index,
            runs: plan.runs,
        });
        samples.push(body(ops)?);
    }
    summarize(&samples)
}

/// Grows the count as `testing.B` does until one run lasts `plan.target`; returns the count
/// that should make a run last about `plan.target`. The warm-up runs are discarded.
fn warm_up<B, P>(plan: &Plan, body: &mut B, progress: &mut P) -> anyhow::Result<u64>
where
    B: FnMut(u64) -> anyhow::Result<Sample>,
    P: FnMut(Phase),
{
    let max_ops = plan.max_ops.max(1);
    let mut ops = 1;
    let mut sample = loop {
        progress(Phase::WarmUp(ops));
        let sample = body(ops)?;
        if sample.elapsed >= plan.target || ops >= max_ops {
            break sample;
        }
        ops = next_ops(plan.target, &sample).min(max_ops);
    };
    // A shape can change speed after its first long run (threads that start spinning in
    // step, a pool that has grown its workers): confirm the count with one more run and
    // re-aim while a run of it is far off the target, so measured runs are not 100× short.
    for _ in 0..CONFIRMATIONS {
        ops = ops_for(plan.target, &sample).clamp(1, max_ops);
        progress(Phase::WarmUp(ops));
        sample = body(ops)?;
        let elapsed = sample.elapsed;
        if (elapsed >= plan.target / 2 && elapsed <= plan.target * 2) || ops >= max_ops {
            break;
        }
    }
    Ok(ops_for(plan.target, &sample).clamp(1, max_ops))
}

/// Extra warm-up runs at the predicted count, at most (see [`warm_up`]).
const CONFIRMATIONS: usize = 3;

/// `testing.B`'s `predictN`: aim 20% past the target, grow at most 100× and at least by one.
fn next_ops(target: Duration, last: &Sample) -> u64 {
    let last_ops = last.ops.max(1);
    let mut n = ops_for(target, last);
    n = n.saturating_add(n / 5);
    n.min(last_ops.saturating_mul(100)).max(last_ops + 1)
}

/// How many ops of the speed seen in `sample` fill `target`.
fn ops_for(target: Duration, sample: &Sample) -> u64 {
    let ns = sample.elapsed.as_nanos().max(1);
    let ops = target
        .as_nanos()
        .saturating_mul(u128::from(sample.ops.max(1)))
        / ns;
    u64::try_from(ops).unwrap_or(u64::MAX)
}

fn summarize(samples: &[Sample]) -> anyhow::Result<Summary> {
    anyhow::ensure!(!samples.is_empty(), "no samples");
    let mut per_op: Vec<f64> = samples
        .iter()
        .map(|s| s.elapsed.as_nanos() as f64 / s.ops.max(1) as f64)
        .collect();
    let total_ops: u64 = samples.iter().map(|s| s.ops.max(1)).sum();
    let total_allocs: u64 = samples.iter().map(|s| s.allocs.allocs).sum();
    let total_bytes: u64 = samples.iter().map(|s| s.allocs.bytes).sum();
    per_op.sort_by(f64::total_cmp);
    Ok(Summary {
        min_ns: per_op[0],
        median_ns: median_of_sorted(&per_op),
        max_ns: per_op[per_op.len() - 1],
        bytes_per_op: total_bytes as f64 / total_ops as f64,
        allocs_per_op: total_allocs as f64 / total_ops as f64,
        ops_per_run: samples[samples.len() - 1].ops,
        runs: samples.len(),
    })
}

/// The median of sorted values; the mean of the middle two for an even count.
pub(crate) fn median_of_sorted(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ops: u64, ns: u64, allocs: u64) -> Sample {
        Sample {
            ops,
            elapsed: Duration::from_nanos(ns),
            allocs: AllocSnapshot {
                allocs,
                bytes: allocs * 16,
                frees: allocs,
            },
        }
    }

    #[test]
    fn median_odd_and_even() {
        assert_eq!(median_of_sorted(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median_of_sorted(&[1.0, 2.0, 4.0, 9.0]), 3.0);
        assert!(median_of_sorted(&[]).is_nan());
    }

    #[test]
    fn next_ops_grows_like_testing_b() {
        let target = Duration::from_millis(100);
        // 1 op in 1 µs: the prediction (1.2e5) is capped at 100× the last count.
        assert_eq!(next_ops(target, &sample(1, 1_000, 0)), 100);
        // 1000 ops in 10 ms: 10_000 ops fill 100 ms, plus 20%.
        assert_eq!(next_ops(target, &sample(1000, 10_000_000, 0)), 12_000);
        // A run already longer than the target still grows by one.
        assert_eq!(next_ops(target, &sample(10, 1_000_000_000, 0)), 11);
    }

    #[test]
    fn measure_warms_up_then_runs_the_planned_count() {
        let plan = Plan {
            target: Duration::from_millis(10),
            runs: 5,
            max_ops: 1 << 40,
            fixed_ops: None,
        };
        // A fake body where each op costs exactly 1 µs and allocates once.
        let mut calls = Vec::new();
        let summary = measure(
            &plan,
            |ops| {
                calls.push(ops);
                Ok(sample(ops, ops * 1_000, ops))
            },
            |_| {},
        )
        .unwrap();
        // Warm-up 1, 100, 10 000 (lasts the target), one confirmation, then 5 runs.
        assert_eq!(
            calls,
            [1, 100, 10_000, 10_000, 10_000, 10_000, 10_000, 10_000, 10_000]
        );
        assert_eq!(summary.median_ns, 1_000.0);
        assert_eq!(summary.min_ns, 1_000.0);
        assert_eq!(summary.allocs_per_op, 1.0);
        assert_eq!(summary.bytes_per_op, 16.0);
        assert_eq!(summary.ops_per_run, 10_000);
        assert_eq!(summary.runs, 5);
    }

    #[test]
    fn warm_up_re_aims_when_the_shape_speeds_up() {
        let plan = Plan {
            target: Duration::from_millis(10),
            runs: 2,
            max_ops: 1 << 40,
            fixed_ops: None,
        };
        // 10 µs per op for the first 3 runs, then 10 ns per op (1000× faster).
        let mut calls = Vec::new();
        let summary = measure(
            &plan,
            |ops| {
                calls.push(ops);
                let ns_per_op = if calls.len() <= 3 { 10_000 } else { 10 };
                Ok(sample(ops, ops * ns_per_op, 0))
            },
            |_| {},
        )
        .unwrap();
        // 1, 100, 1200 (12 ms: done); confirm 1000 (10 µs: 1000× short); re-aim to 10⁶
        // (10 ms: confirmed); measured runs of 10⁶.
        assert_eq!(calls, [1, 100, 1200, 1000, 1_000_000, 1_000_000, 1_000_000]);
        assert_eq!(summary.ops_per_run, 1_000_000);
        assert_eq!(summary.median_ns, 10.0);
    }

    #[test]
    fn fixed_ops_skips_the_warm_up() {
        let plan = Plan {
            target: Duration::from_secs(1),
            runs: 1,
            max_ops: 1 << 40,
            fixed_ops: Some(64),
        };
        let mut calls = Vec::new();
        let s = measure(
            &plan,
            |ops| {
                calls.push(ops);
                Ok(sample(ops, 640, 0))
            },
            |_| {},
        )
        .unwrap();
        assert_eq!(calls, [64]);
        assert_eq!(s.median_ns, 10.0);
        assert_eq!(s.allocs_per_op, 0.0);
    }

    #[test]
    fn median_min_max_over_runs() {
        let plan = Plan {
            target: Duration::from_secs(1),
            runs: 3,
            max_ops: 1 << 40,
            fixed_ops: Some(10),
        };
        let mut times = [300u64, 100, 200].into_iter();
        let s = measure(
            &plan,
            |ops| Ok(sample(ops, times.next().unwrap(), 0)),
            |_| {},
        )
        .unwrap();
        assert_eq!((s.min_ns, s.median_ns, s.max_ns), (10.0, 20.0, 30.0));
    }
}
