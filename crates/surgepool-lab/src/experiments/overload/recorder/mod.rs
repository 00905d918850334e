//! The child's own accounting: counters for every request outcome, latency histograms, and
//! the tracked future that feeds them.
//!
//! Every accepted request is wrapped in a [`Tracked`] future whose drop guard records how it
//! ended: finished (completed), dropped while the thread unwinds (failed), dropped after it
//! started or once the run is draining (cancelled), dropped before it ever ran (shed). So
//! our counts do not depend on the strategy under test reporting honestly; for the surgepool
//! pools they are cross-checked against the pool's own snapshot at the end.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

mod counts;
mod halves;
mod latency;
#[cfg(test)]
mod tests;
mod tracked;

pub(crate) use self::counts::Counts;
pub(crate) use self::tracked::Tracked;

/// Latencies are recorded in microseconds, from 1 µs to one hour, 3 significant digits.
const MAX_LATENCY_US: u64 = 3_600_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid")
}

/// Counters and histograms shared by the generator, the work and the sampler.
#[derive(Debug)]
pub(crate) struct Recorder {
    accepted: AtomicU64,
    rejected: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    shed: AtomicU64,
    cancelled: AtomicU64,
    /// Completions whose latency from intended arrival was at most `slo_us`.
    within_slo: AtomicU64,
    slo_us: u64,
    /// When arrivals began and the midpoint that splits them into halves (unset: all in
    /// the first half).
    halves: OnceLock<(Instant, Instant)>,
    /// Per half: requests offered, completed, completed within the SLO.
    arrived: [AtomicU64; 2],
    completed_in: [AtomicU64; 2],
    within_slo_in: [AtomicU64; 2],
    /// `--scenario slowdown`: work that starts from this instant on takes longer.
    slow_from: OnceLock<Instant>,
    /// Set when the run stops waiting for work to finish: anything dropped from then on was
    /// cancelled by the shutdown, not shed by the strategy.
    draining: AtomicBool,
    histograms: Mutex<Histograms>,
}

#[derive(Debug)]
struct Histograms {
    /// Completed requests, whole run.
    total: Histogram<u64>,
    /// Completed requests since the last sample.
    interval: Histogram<u64>,
    /// Rejected requests: intended arrival to the refusal.
    rejection: Histogram<u64>,
    /// Completed requests by the half in which they were due.
    halves: [Histogram<u64>; 2],
}

impl Recorder {
    /// A recorder that counts completions within `slo` of their intended arrival.
    pub(crate) fn new(slo: Duration) -> Arc<Recorder> {
        Arc::new(Recorder {
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            within_slo: AtomicU64::new(0),
            slo_us: micros(slo),
            halves: OnceLock::new(),
            slow_from: OnceLock::new(),
            arrived: Default::default(),
            completed_in: Default::default(),
            within_slo_in: Default::default(),
            draining: AtomicBool::new(false),
            histograms: Mutex::new(Histograms {
                total: histogram(),
                interval: histogram(),
                rejection: histogram(),
                halves: [histogram(), histogram()],
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Histograms> {
        self.histograms.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_LATENCY_US)
}
