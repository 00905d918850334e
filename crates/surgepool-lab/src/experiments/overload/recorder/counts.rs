//! Counting every request's outcome: the [`Counts`] at one instant and the calls that add
//! to them.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{micros, Recorder};
use crate::experiments::overload::change;

/// The counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Counts {
    pub(crate) accepted: u64,
    pub(crate) rejected: u64,
    pub(crate) completed: u64,
    pub(crate) failed: u64,
    pub(crate) shed: u64,
    pub(crate) cancelled: u64,
    /// Completed within the SLO (a subset of `completed`).
    #[serde(default)]
    pub(crate) within_slo: u64,
}

impl Counts {
    /// Accepted and not yet ended: queued or running.
    pub(crate) fn in_flight(&self) -> u64 {
        self.accepted
            .saturating_sub(self.completed + self.failed + self.shed + self.cancelled)
    }
}

impl Recorder {
    /// A request was accepted by the strategy.
    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was refused; `intended` is its scheduled arrival.
    pub(crate) fn rejected(&self, intended: Instant) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        let us = micros(intended.elapsed());
        self.lock().rejection.saturating_record(us);
    }

    /// From now on, an unfinished request that is dropped was cancelled by the shutdown.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub(crate) fn counts(&self) -> Counts {
        // Outcomes first, then `accepted`: a request is counted accepted before it can end,
        // so reading in this order never shows more ended than accepted. Likewise
        // `within_slo` before `completed`.
        let within_slo = self.within_slo.load(Ordering::SeqCst);
        let completed = self.completed.load(Ordering::SeqCst);
        let failed = self.failed.load(Ordering::SeqCst);
        let shed = self.shed.load(Ordering::SeqCst);
        let cancelled = self.cancelled.load(Ordering::SeqCst);
        Counts {
            within_slo,
            accepted: self.accepted.load(Ordering::SeqCst),
            rejected: self.rejected.load(Ordering::SeqCst),
            completed,
            failed,
            shed,
            cancelled,
        }
    }

    /// A request due at `intended` completed; `slowed`: its work ran at the slowdown's
    /// service time, and its SLO grows by the same factor (the SLO is a multiple of the
    /// service time, so the slowed half stays measurable instead of missing it by design).
    pub(super) fn completed(&self, intended: Instant, slowed: bool) {
        let us = micros(intended.elapsed());
        let slo_us = if slowed {
            self.slo_us
                .saturating_mul(u64::from(change::SLOWDOWN_FACTOR))
        } else {
            self.slo_us
        };
        let half = self.half(intended);
        {
            let mut h = self.lock();
            h.total.saturating_record(us);
            h.interval.saturating_record(us);
            h.halves[half].saturating_record(us);
        }
        self.completed_in[half].fetch_add(1, Ordering::SeqCst);
        self.completed.fetch_add(1, Ordering::SeqCst);
        if us <= slo_us {
            self.within_slo_in[half].fetch_add(1, Ordering::SeqCst);
            // After `completed`, and `counts` reads it before `completed`: a reader never
            // sees more completions within the SLO than completions.
            self.within_slo.fetch_add(1, Ordering::SeqCst);
        }
    }
}
