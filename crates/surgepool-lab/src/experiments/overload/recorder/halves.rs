//! The two halves of a run whose load changes halfway: where they split, what each was
//! offered and completed, and when the slowdown starts.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::latency::summary;
use super::Recorder;
use crate::experiments::overload::change;
use crate::scenario_json::Phase;

impl Recorder {
    /// Arrivals began at `start`; requests due from `midpoint` on belong to the second half.
    /// Set once, before the first arrival.
    pub(crate) fn split_halves(&self, start: Instant, midpoint: Instant) {
        let _ = self.halves.set((start, midpoint));
    }

    /// Work that starts from `at` on takes [`change::SLOWDOWN_FACTOR`]× its service time.
    pub(crate) fn slow_down_from(&self, at: Instant) {
        let _ = self.slow_from.set(at);
    }

    pub(super) fn half(&self, intended: Instant) -> usize {
        match self.halves.get() {
            Some(&(_, midpoint)) if intended >= midpoint => 1,
            _ => 0,
        }
    }

    /// The generator handed over the request due at `intended` (accepted or not).
    pub(crate) fn arrived(&self, intended: Instant) {
        self.arrived[self.half(intended)].fetch_add(1, Ordering::Relaxed);
    }

    /// The two halves' figures; `duration` is the length of the arrivals, `mean_limits` the
    /// strategy's mean limit in each half (filled in by the parent from its samples).
    pub(crate) fn phases(&self, duration: Duration) -> Vec<Phase> {
        let h = self.lock();
        let half = duration.as_secs_f64() / 2.0;
        (0..2)
            .map(|i| {
                let within = self.within_slo_in[i].load(Ordering::SeqCst);
                let completed = self.completed_in[i].load(Ordering::SeqCst);
                Phase {
                    name: ["first", "second"][i].to_owned(),
                    from_s: half * i as f64,
                    to_s: half * (i + 1) as f64,
                    offered: self.arrived[i].load(Ordering::SeqCst),
                    completed,
                    within_slo: within,
                    goodput_rps: completed as f64 / half.max(1e-9),
                    slo_goodput_rps: within as f64 / half.max(1e-9),
                    latency_ms: summary(&h.halves[i]),
                    mean_limit: 0.0,
                    slo_ms: self.slo_us as f64 / 1000.0
                        * if i == 1 && self.slow_from.get().is_some() {
                            f64::from(change::SLOWDOWN_FACTOR)
                        } else {
                            1.0
                        },
                }
            })
            .collect()
    }
}
