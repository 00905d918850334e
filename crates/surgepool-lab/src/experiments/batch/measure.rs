//! What one strategy measured, and the open-loop driver that feeds a `Batcher`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use surgepool::batch::Batcher;
use tokio::time::Instant;

use super::Row;

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct LatencyMs {
    pub(crate) mean: f64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

/// Batch sizes of a strategy.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct BatchSizes {
    pub(crate) mean: f64,
    pub(crate) p50: f64,
    pub(crate) max: u64,
}

/// One row of the report (API.md's JSON contract, plus `offered_rps`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StrategyResult {
    pub(crate) name: String,
    pub(crate) db: &'static str,
    pub(crate) items: u64,
    pub(crate) committed: u64,
    pub(crate) failed: u64,
    pub(crate) lost: u64,
    pub(crate) rows_in_table: u64,
    pub(crate) rows_per_s: f64,
    pub(crate) item_latency_ms: LatencyMs,
    pub(crate) batch_size: BatchSizes,
    /// Arrival rate of the open-loop strategies (`batcher*`); 0 for the others, which
    /// write a slice they already hold (the seed's shape).
    pub(crate) offered_rps: f64,
}

/// Item latencies, recorded in microseconds.
pub(crate) struct Latencies(Histogram<u64>);

impl Latencies {
    pub(crate) fn new() -> Latencies {
        Latencies(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"))
    }

    pub(crate) fn record(&mut self, seconds: f64, count: u64) {
        let micros = (seconds * 1e6).round().max(1.0) as u64;
        self.0.saturating_record_n(micros, count.max(1));
    }

    pub(crate) fn summary(&self) -> LatencyMs {
        if self.0.is_empty() {
            return LatencyMs::default();
        }
        LatencyMs {
            mean: self.0.mean() / 1e3,
            p50: self.0.value_at_quantile(0.5) as f64 / 1e3,
            p99: self.0.value_at_quantile(0.99) as f64 / 1e3,
            max: self.0.max() as f64 / 1e3,
        }
    }
}

/// Sizes of the units a closed-loop strategy wrote.
pub(crate) fn sizes(units: &[usize]) -> BatchSizes {
    if units.is_empty() {
        return BatchSizes::default();
    }
    let mut sorted = units.to_vec();
    sorted.sort_unstable();
    BatchSizes {
        mean: units.iter().sum::<usize>() as f64 / units.len() as f64,
        p50: sorted[sorted.len() / 2] as f64,
        max: sorted.last().copied().unwrap_or(0) as u64,
    }
}

/// What the open-loop driver saw.
pub(crate) struct OpenLoop {
    pub(crate) committed: u64,
    pub(crate) failed: u64,
    pub(crate) rows_per_s: f64,
    pub(crate) latency: LatencyMs,
    pub(crate) batch_size: BatchSizes,
    pub(crate) first_error: Option<String>,
}

/// Offers `rows` to `batcher` one by one at `rate` per second (open loop: item `i` is due
/// at `start + i / rate` whatever the batcher does), and measures each item from its
/// intended arrival to its commit. Then shuts the batcher down (every accepted item gets
/// its outcome).
pub(crate) async fn drive(
    batcher: Batcher<Row, i64>,
    rows: Arc<Vec<Row>>,
    rate: f64,
    tick: impl Fn(),
) -> OpenLoop {
    let start = Instant::now();
    let period = 1.0 / rate.max(f64::MIN_POSITIVE);
    let mut waits = Vec::with_capacity(rows.len());
    let mut failed = 0;
    let mut first_error = None;
    for (i, row) in rows.iter().enumerate() {
        let intended = start + Duration::from_secs_f64(i as f64 * period);
        if intended > Instant::now() {
            tokio::time::sleep_until(intended).await;
        }
        match batcher.try_submit(row.clone()) {
            Ok(receipt) => waits.push(tokio::spawn(timed(intended, receipt))),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
        tick();
    }
    let mut latencies = Latencies::new();
    let mut committed = 0;
    let mut last = start;
    for wait in waits {
        match wait.await {
            Ok((Ok(_), done, latency)) => {
                committed += 1;
                latencies.record(latency, 1);
                last = last.max(done);
            }
            Ok((Err(e), _, _)) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    batcher.shutdown().await;
    let s = batcher.snapshot();
    let span = last.saturating_duration_since(start).as_secs_f64();
    OpenLoop {
        committed,
        failed,
        rows_per_s: committed as f64 / span.max(1e-9),
        latency: latencies.summary(),
        batch_size: BatchSizes {
            mean: s.batch_size.mean,
            p50: s.batch_size.p50 as f64,
            max: s.batch_size.max,
        },
        first_error,
    }
}

async fn timed<F, T>(intended: Instant, receipt: F) -> (T, Instant, f64)
where
    F: Future<Output = T>,
{
    let out = receipt.await;
    let done = Instant::now();
    let latency = done.saturating_duration_since(intended).as_secs_f64();
    (out, done, latency)
}
