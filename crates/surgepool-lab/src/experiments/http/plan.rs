//! The run's sizes ([`Plan`]): a preset's, overridden by the flags.

use std::time::Duration;

use anyhow::ensure;

use super::Args;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Preset {
    Quick,
    Smoke,
}

/// The run's sizes, from the preset and the flags.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) duration: Duration,
    pub(super) warmup: Duration,
    pub(super) probe: Duration,
    pub(super) probes: usize,
    pub(super) sweep_duration: Duration,
    pub(super) hello: Duration,
    pub(super) hello_rounds: usize,
    pub(super) connections: usize,
    pub(super) probe_connections: usize,
    pub(super) max_rps: f64,
}

impl Preset {
    /// The preset's sizes, before the flags override them.
    fn plan(self) -> Plan {
        match self {
            Preset::Quick => Plan {
                duration: Duration::from_secs(10),
                warmup: Duration::from_secs(1),
                probe: Duration::from_millis(600),
                probes: 5,
                // Set from `duration` unless `--sweep-duration-s` says otherwise.
                sweep_duration: Duration::ZERO,
                // Short alternating rounds, median: other processes' noise hits both alike.
                hello: Duration::from_millis(1_500),
                hello_rounds: 5,
                connections: 2_048,
                probe_connections: 512,
                max_rps: 50_000.0,
            },
            Preset::Smoke => Plan {
                duration: Duration::from_millis(1_500),
                warmup: Duration::from_millis(300),
                probe: Duration::from_millis(250),
                probes: 3,
                // Set from `duration` unless `--sweep-duration-s` says otherwise.
                sweep_duration: Duration::ZERO,
                hello: Duration::from_millis(500),
                hello_rounds: 1,
                connections: 64,
                probe_connections: 16,
                max_rps: 300.0,
            },
        }
    }
}

impl Args {
    pub(super) fn plan(&self) -> anyhow::Result<Plan> {
        ensure!(
            self.overload.is_finite() && self.overload > 0.0,
            "--overload must be above 0"
        );
        if let Some(rps) = self.rps {
            ensure!(rps.is_finite() && rps > 0.0, "--rps must be above 0");
        }
        ensure!(self.deadline_ms > 0, "--deadline-ms must be at least 1");
        ensure!(
            self.probe_connections != Some(0) && self.hello_connections > 0,
            "connection counts must be at least 1"
        );
        let mut plan = self.preset.plan();
        if let Some(d) = self.duration_s {
            ensure!(
                d.is_finite() && d > 0.0 && d <= 600.0,
                "--duration-s must be in (0, 600]"
            );
            plan.duration = Duration::from_secs_f64(d);
        }
        if let Some(c) = self.connections {
            ensure!(
                (1..=16_384).contains(&c),
                "--connections must be in 1..=16384"
            );
            plan.connections = c;
        }
        if let Some(n) = self.probes {
            ensure!((1..=100).contains(&n), "--probes must be in 1..=100");
            plan.probes = n;
        }
        // A swept layer runs as long as the layered server unless told otherwise: the
        // judged ratio compares their SLO goodput, and a shorter run weighs its start more
        // (the quick preset used to run each swept layer 5 s against 10 s).
        plan.sweep_duration = plan.duration;
        if let Some(d) = self.sweep_duration_s {
            ensure!(
                d.is_finite() && d > 0.0 && d <= 600.0,
                "--sweep-duration-s must be in (0, 600]"
            );
            plan.sweep_duration = Duration::from_secs_f64(d);
        }
        if let Some(limits) = &self.sweep_limits {
            ensure!(
                limits.iter().all(|&n| n >= 1),
                "--sweep-limits must all be at least 1"
            );
        }
        if let Some(c) = self.probe_connections {
            ensure!(c <= 16_384, "--probe-connections must be at most 16384");
            plan.probe_connections = c;
        }
        Ok(plan)
    }
}

pub(super) fn preset_name(preset: Preset) -> &'static str {
    match preset {
        Preset::Quick => "quick",
        Preset::Smoke => "smoke",
    }
}
