//! What a child prints on stdout, one JSON value per line.

use serde::{Deserialize, Serialize};

use super::recorder::Counts;
use crate::scenario_json::{LatencyMs, StrategyResult};

/// One line from the child.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum ChildLine {
    /// Periodic progress.
    Sample(Sample),
    /// The final result (the last line).
    Result(Box<StrategyResult>),
}

/// The child's state every ~100 ms.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Sample {
    /// Seconds since arrivals began.
    pub(crate) t_s: f64,
    /// Requests offered so far.
    pub(crate) offered: u64,
    /// Outcome counters so far.
    pub(crate) counts: Counts,
    /// Accepted, not yet ended.
    pub(crate) in_flight: u64,
    /// The strategy's limit now (0: none).
    pub(crate) limit: u64,
    /// The child's own RSS reading.
    pub(crate) rss_bytes: u64,
    /// Length of the interval this sample closes.
    pub(crate) interval_s: f64,
    /// Completions per second over the interval.
    pub(crate) goodput_rps: f64,
    /// Completions within the SLO per second over the interval.
    #[serde(default)]
    pub(crate) slo_goodput_rps: f64,
    /// Median latency of the interval's completions, ms.
    pub(crate) p50_ms: f64,
    /// 99th percentile of the same, ms.
    pub(crate) p99_ms: f64,
    /// All completions so far.
    pub(crate) latency_ms: LatencyMs,
}
