//! [`BatchSnapshot`]: the batcher's exact accounting and its histograms.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::histogram::Recorder;
use crate::stats::LatencySummary;

/// A consistent picture of a [`Batcher`](super::Batcher)'s accounting, taken at one instant.
///
/// Counters are cumulative since the batcher was built; `queued`, `in_flush`,
/// `flushes_running` and `limit` are gauges. Every counter moves under one lock and the
/// snapshot is taken under it, so the identities hold in *every* snapshot (a submit that has
/// not returned yet is not counted anywhere):
///
/// * `submitted == accepted + rejected`
/// * `accepted == committed + failed + shed + cancelled + queued + in_flush`
///
/// # Examples
///
/// ```
/// use surgepool::batch::Batcher;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let batcher = Batcher::builder(|items: Vec<u8>| async move { Ok::<_, String>(items) })
///     .build()
///     .unwrap();
/// batcher.try_submit(7).unwrap().await.unwrap();
/// let s = batcher.snapshot();
/// assert_eq!(s.submitted, s.accepted + s.rejected);
/// assert_eq!(s.accepted, s.committed + s.failed + s.shed + s.cancelled + s.queued + s.in_flush);
/// assert_eq!((s.committed, s.flushes, s.batch_size.max), (1, 1, 1));
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct BatchSnapshot {
    /// Calls that offered an item (`try_submit`, and `submit*` calls that returned).
    pub submitted: u64,
    /// Items handed back: full, closed or timed out.
    pub rejected: u64,
    /// Items the batcher took; each ends as exactly one of the outcomes below.
    pub accepted: u64,
    /// Items whose flush succeeded: their receipt holds their output.
    pub committed: u64,
    /// Items whose flush failed: an error, a wrong output count, or a panic.
    pub failed: u64,
    /// Items dropped from the queue after `queue_timeout`.
    pub shed: u64,
    /// Items cancelled at a shutdown deadline (or when the runtime went away).
    pub cancelled: u64,
    /// Items waiting in the queue now.
    pub queued: u64,
    /// Items inside a flush now (bisection retries included).
    pub in_flush: u64,
    /// Calls of the flush function, bisection retries included.
    pub flushes: u64,
    /// Flush calls that returned an error, a wrong output count or panicked.
    pub failed_flushes: u64,
    /// Failed batches that were split in two and retried ([`OnFailure::Bisect`](super::OnFailure::Bisect)).
    pub bisections: u64,
    /// Flushes running now (each holds one permit of the limit).
    pub flushes_running: u64,
    /// The flush concurrency limit now.
    pub limit: u64,
    /// Items per flush call.
    pub batch_size: BatchSizeSummary,
    /// Time of one flush call.
    pub flush_latency: LatencySummary,
    /// Time from acceptance to the item's outcome (committed or failed), queue wait included.
    pub item_latency: LatencySummary,
}

/// Summary of the batch sizes (2 significant digits, as the latency histograms). Read it
/// from [`BatchSnapshot::batch_size`]; see the [example on `BatchSnapshot`](BatchSnapshot#examples).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct BatchSizeSummary {
    /// How many flush calls were recorded.
    pub count: u64,
    /// Mean items per flush.
    pub mean: f64,
    /// Median items per flush.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest flush.
    pub max: u64,
}

/// The batcher's histograms; live inside its locked state.
#[derive(Debug, Clone)]
pub(crate) struct Histograms {
    batch_size: Recorder,
    /// Exact sum and largest of the batch sizes (the recorder rounds to 2 digits).
    batch_items: u64,
    batch_max: u64,
    flush_latency: Recorder,
    item_latency: Recorder,
}

impl Histograms {
    pub(crate) fn new() -> Histograms {
        Histograms {
            batch_size: Recorder::new(),
            batch_items: 0,
            batch_max: 0,
            flush_latency: Recorder::new(),
            item_latency: Recorder::new(),
        }
    }

    pub(crate) fn record_batch(&mut self, items: usize) {
        let items = items as u64;
        self.batch_size.record(items);
        self.batch_items = self.batch_items.saturating_add(items);
        self.batch_max = self.batch_max.max(items);
    }

    pub(crate) fn record_flush(&mut self, nanos: u64) {
        self.flush_latency.record(nanos);
    }

    pub(crate) fn record_item(&mut self, nanos: u64) {
        self.item_latency.record(nanos);
    }

    pub(crate) fn fill(&self, s: &mut BatchSnapshot) {
        let sizes = self.batch_size.to_histogram();
        if !sizes.is_empty() {
            s.batch_size = BatchSizeSummary {
                count: sizes.len(),
                mean: self.batch_items as f64 / sizes.len() as f64,
                p50: sizes.value_at_quantile(0.5).min(self.batch_max),
                p99: sizes.value_at_quantile(0.99).min(self.batch_max),
                max: self.batch_max,
            };
        }
        s.flush_latency = latency(&self.flush_latency.to_histogram());
        s.item_latency = latency(&self.item_latency.to_histogram());
    }
}

fn latency(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    LatencySummary {
        count: h.len(),
        mean: Duration::from_nanos(h.mean() as u64),
        p50: Duration::from_nanos(h.value_at_quantile(0.50)),
        p99: Duration::from_nanos(h.value_at_quantile(0.99)),
        max: Duration::from_nanos(h.max()),
    }
}
