//! The presets: `quick` for a 2-core developer machine, `seed` for seed 003's parameters.

use crate::work::WorkKind;

/// A named set of defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Preset {
    /// Sized for 2 cores: offered load well above capacity, all four strategies in ~90 s.
    Quick,
    /// Seed 003: 1,000,000 req/s for 30 s, 20 ms, 500 KB (for a big machine; on a small one
    /// `naive` is stopped at the memory cap, which is the point).
    Seed,
}

/// The defaults a preset gives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Defaults {
    pub(crate) rps: u64,
    pub(crate) duration_s: f64,
    pub(crate) service_ms: u64,
    pub(crate) alloc_kb: u64,
    pub(crate) drain_s: f64,
}

impl Preset {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Preset::Quick => "quick",
            Preset::Seed => "seed",
        }
    }

    /// The defaults for `work`.
    pub(crate) fn defaults(self, work: WorkKind) -> Defaults {
        match self {
            // Capacities measured on the 2-core development machine (see the experiment's
            // README): sleep work finishes about QUICK_SLEEP_CAPACITY req/s, CPU work
            // 2 cores / 20 ms = 100 req/s, mixed about 200 req/s. The offered rates are
            // at least 5× those.
            Preset::Quick => Defaults {
                rps: match work {
                    WorkKind::Sleep => 50_000,
                    WorkKind::Cpu => 1_000,
                    WorkKind::Mixed => 2_000,
                },
                duration_s: 15.0,
                service_ms: 20,
                alloc_kb: 500,
                drain_s: 3.0,
            },
            Preset::Seed => Defaults {
                rps: 1_000_000,
                duration_s: 30.0,
                service_ms: 20,
                alloc_kb: 500,
                drain_s: 5.0,
            },
        }
    }
}
