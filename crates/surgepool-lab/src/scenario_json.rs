//! The JSON that `overload` (and `http`, with extra fields) write: API.md's "overload shape".
//!
//! The fields API.md names are the contract scripts read; everything else here is extra and
//! marked so. Serialisation only: the lab writes these, and the smoke test reads them back as
//! untyped JSON.

use serde::{Deserialize, Serialize};

/// The whole document: `{"scenario": ..., "strategies": [...]}` plus extras.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ScenarioReport {
    /// What was asked for.
    pub(crate) scenario: Scenario,
    /// One entry per strategy, in the order they ran.
    pub(crate) strategies: Vec<StrategyResult>,
    /// Extra: the machine it ran on.
    pub(crate) machine: Machine,
    /// Extra: the experiment's goals, checked against this run.
    #[serde(default)]
    pub(crate) goals: Vec<Goal>,
}

/// One goal, checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Goal {
    /// What should hold.
    pub(crate) goal: String,
    /// What this run measured.
    pub(crate) measured: String,
    /// Whether it held.
    pub(crate) met: bool,
}

/// The experiment's parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Scenario {
    /// Preset name (`quick`, `seed`, or `custom` when flags changed it).
    pub(crate) preset: String,
    /// `sleep`, `cpu` or `mixed`.
    pub(crate) work: String,
    /// Requests per second asked for.
    pub(crate) offered_rps: u64,
    /// Seconds of arrivals.
    pub(crate) duration_s: f64,
    /// Service time per request, ms.
    pub(crate) service_ms: u64,
    /// Allocation per request, KB (KiB).
    pub(crate) alloc_kb: u64,
    /// Extra: memory cap per strategy, bytes.
    pub(crate) mem_cap_bytes: u64,
    /// Extra: seconds each strategy may drain after arrivals stop.
    pub(crate) drain_s: f64,
    /// Extra: tokio worker threads in each child.
    pub(crate) worker_threads: usize,
    /// Extra: the latency SLO every strategy's `slo_goodput_rps` counts against, ms.
    #[serde(default)]
    pub(crate) slo_ms: f64,
    /// Extra: how the load changes halfway (`steady`, `slowdown`, `capacity-drop`; empty
    /// for experiments without `--scenario`).
    #[serde(default)]
    pub(crate) kind: String,
}

/// The machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Machine {
    /// Available parallelism.
    pub(crate) cores: usize,
    /// Total memory, bytes.
    pub(crate) memory_bytes: u64,
    /// The allocator the lab was built with ("system", "jemalloc", "mimalloc"); empty in
    /// JSON written before it was recorded.
    #[serde(default)]
    pub(crate) allocator: String,
}

/// Latency figures, milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct LatencyMs {
    /// Mean.
    pub(crate) mean: f64,
    /// Median.
    pub(crate) p50: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
    /// 99.9th percentile.
    pub(crate) p999: f64,
    /// Largest.
    pub(crate) max: f64,
}

/// One strategy's result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct StrategyResult {
    /// `naive`, `fixed`, `tower`, `adaptive`, `fixed_<N>` (or `bare`/`layered` for `http`).
    pub(crate) name: String,
    /// Requests the generator handed over.
    pub(crate) offered: u64,
    /// Offered requests per second of arrivals, as achieved.
    pub(crate) achieved_rps: f64,
    /// Requests the strategy took.
    pub(crate) accepted: u64,
    /// Requests refused at the door.
    pub(crate) rejected: u64,
    /// Accepted requests whose work finished.
    pub(crate) completed: u64,
    /// Accepted requests whose work failed (panicked).
    pub(crate) failed: u64,
    /// Accepted requests dropped before they ran (queue timeout / delay).
    pub(crate) shed: u64,
    /// Accepted requests cancelled (at the end of the drain, or killed at the memory cap).
    pub(crate) cancelled: u64,
    /// Accepted requests not accounted for by the above, plus any disagreement between our
    /// counts and the pool's own snapshot. Must be 0.
    pub(crate) lost: u64,
    /// Completed requests per second of the run (`completed / ran_s`).
    pub(crate) goodput_rps: f64,
    /// The latency SLO, ms: a completion counts toward `slo_goodput_rps` when its latency
    /// from intended arrival (queue wait included) is at most this (under `--scenario
    /// slowdown`, work that runs slowed is judged against this times the slowdown).
    #[serde(default)]
    pub(crate) slo_ms: f64,
    /// Completions within the SLO per second of the run (`within / ran_s`): the headline
    /// figure under overload (Breakwater, DAGOR and SEDA judge overload control by it).
    #[serde(default)]
    pub(crate) slo_goodput_rps: f64,
    /// Extra: completions within the SLO.
    #[serde(default)]
    pub(crate) within_slo: u64,
    /// Largest RSS seen, bytes.
    pub(crate) peak_rss_bytes: u64,
    /// `true` when the strategy was killed at the memory cap.
    pub(crate) stopped_at_cap: bool,
    /// Seconds the strategy ran: arrivals plus drain, or until it was stopped.
    pub(crate) ran_s: f64,
    /// Completed requests' latency from intended arrival to completion, queue wait included.
    pub(crate) latency_ms: LatencyMs,
    /// Extra: the strategy's settings in words (limit, queue, ...).
    pub(crate) config: String,
    /// Extra: the arrival rate asked for.
    pub(crate) asked_rps: f64,
    /// Extra: requests the schedule asked for (`asked_rps × duration_s`).
    pub(crate) scheduled: u64,
    /// Extra: how far behind its schedule the generator was at the end, ms.
    pub(crate) generator_lag_ms: f64,
    /// Extra: when stopped at the cap, after how many seconds.
    pub(crate) stopped_at_cap_after_s: Option<f64>,
    /// Extra: `true` when the child hit the wall-clock timeout.
    pub(crate) timed_out: bool,
    /// Extra: latency of rejections (intended arrival to the refusal), ms.
    pub(crate) rejection_latency_ms: LatencyMs,
    /// Extra: the limit at the end of the run (0 when the strategy has none).
    pub(crate) final_limit: u64,
    /// Extra: disagreements between our counts and the pool's snapshot, in words.
    pub(crate) accounting_notes: Vec<String>,
    /// Extra: the time series (every ~100 ms).
    pub(crate) series: Vec<SeriesPoint>,
    /// Per-half figures (`overload`: the first and the second half of the arrivals, split
    /// where `--scenario` changes the load); empty when the experiment has no halves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) phases: Vec<Phase>,
}

/// One half of a run's arrivals. Requests belong to the half in which they were due
/// (intended arrival), so each half's rates divide by that half's length of arrivals.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Phase {
    /// `first` or `second`.
    pub(crate) name: String,
    /// Start of the half, seconds since arrivals began.
    pub(crate) from_s: f64,
    /// End of the half, seconds since arrivals began.
    pub(crate) to_s: f64,
    /// Requests due in this half that the generator handed over.
    pub(crate) offered: u64,
    /// Of those, completed.
    pub(crate) completed: u64,
    /// Of those, completed within the SLO.
    pub(crate) within_slo: u64,
    /// `completed / (to_s - from_s)`.
    pub(crate) goodput_rps: f64,
    /// `within_slo / (to_s - from_s)`.
    pub(crate) slo_goodput_rps: f64,
    /// Latency of this half's completions, from intended arrival.
    pub(crate) latency_ms: LatencyMs,
    /// The strategy's limit, averaged over the samples taken during the half (0: none).
    pub(crate) mean_limit: f64,
    /// The SLO this half's requests were judged against, ms (`slowdown` multiplies it with
    /// the service time for work that runs slowed).
    pub(crate) slo_ms: f64,
}

/// One point of a strategy's time series.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct SeriesPoint {
    /// Seconds since the strategy's arrivals began.
    pub(crate) t_s: f64,
    /// Completions per second over the last interval.
    pub(crate) goodput_rps: f64,
    /// Completions within the SLO per second over the last interval.
    #[serde(default)]
    pub(crate) slo_goodput_rps: f64,
    /// Accepted and not yet finished (queued + running).
    pub(crate) in_flight: u64,
    /// The concurrency limit (0 when the strategy has none).
    pub(crate) limit: u64,
    /// Resident memory, bytes.
    pub(crate) rss_bytes: u64,
    /// Median latency of the requests completed in the last interval, ms.
    pub(crate) p50_ms: f64,
    /// 99th percentile of the same, ms.
    pub(crate) p99_ms: f64,
}
