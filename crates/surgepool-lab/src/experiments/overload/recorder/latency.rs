//! Latency summaries read from the histograms: each sampling [`Interval`] and the whole run.

use hdrhistogram::Histogram;

use super::Recorder;
use crate::scenario_json::LatencyMs;

/// What one sampling interval saw.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Interval {
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    /// Cumulative latency of all completed requests so far.
    pub(crate) total: LatencyMs,
}

impl Recorder {
    /// Takes the interval histogram (resetting it) and summarises both.
    pub(crate) fn take_interval(&self) -> Interval {
        let mut h = self.lock();
        let interval = Interval {
            p50_ms: ms(h.interval.value_at_quantile(0.50)),
            p99_ms: ms(h.interval.value_at_quantile(0.99)),
            total: summary(&h.total),
        };
        h.interval.reset();
        interval
    }

    /// Completed-latency and rejection-latency summaries.
    pub(crate) fn latencies(&self) -> (LatencyMs, LatencyMs) {
        let h = self.lock();
        (summary(&h.total), summary(&h.rejection))
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub(super) fn summary(h: &Histogram<u64>) -> LatencyMs {
    if h.is_empty() {
        return LatencyMs::default();
    }
    LatencyMs {
        mean: h.mean() / 1000.0,
        p50: ms(h.value_at_quantile(0.50)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}
