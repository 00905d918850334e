//! The resolved parameters of one run, shared by the parent and (as arguments) the child.

use std::path::PathBuf;
use std::time::Duration;

use super::change::Change;
use super::strategy::QueuePolicy;
use crate::work::{Work, WorkKind};

/// Everything a child needs to run one strategy.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) work: WorkKind,
    pub(crate) rps: u64,
    pub(crate) duration_s: f64,
    pub(crate) service_ms: u64,
    pub(crate) alloc_kb: u64,
    pub(crate) drain_s: f64,
    pub(crate) worker_threads: usize,
    /// The queue of `adaptive` and `fixed_<N>`.
    pub(crate) queue: QueuePolicy,
    /// The latency SLO, ms (from intended arrival, queue wait included).
    pub(crate) slo_ms: f64,
    /// How the load changes halfway.
    pub(crate) change: Change,
    /// Where each child writes the adaptive limit's decision trace (`<strategy>.log`).
    pub(crate) trace_dir: Option<PathBuf>,
}

impl Params {
    pub(crate) fn work(&self) -> Work {
        Work {
            kind: self.work,
            service: Duration::from_millis(self.service_ms),
            alloc_bytes: usize::try_from(self.alloc_kb.saturating_mul(1024)).unwrap_or(usize::MAX),
        }
    }

    pub(crate) fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration_s)
    }

    pub(crate) fn slo(&self) -> Duration {
        Duration::from_secs_f64(self.slo_ms / 1000.0)
    }

    pub(crate) fn drain(&self) -> Duration {
        Duration::from_secs_f64(self.drain_s)
    }

    /// The arguments that make a child run `strategy` with these parameters.
    pub(crate) fn child_args(&self, strategy: &str) -> Vec<String> {
        let mut args = vec![
            "overload".into(),
            "--child".into(),
            strategy.into(),
            "--work".into(),
            self.work.name().into(),
            "--rps".into(),
            self.rps.to_string(),
            "--duration".into(),
            self.duration_s.to_string(),
            "--service-ms".into(),
            self.service_ms.to_string(),
            "--alloc-kb".into(),
            self.alloc_kb.to_string(),
            "--drain".into(),
            self.drain_s.to_string(),
            "--workers".into(),
            self.worker_threads.to_string(),
            "--queue-capacity".into(),
            self.queue.capacity.to_string(),
            "--queue-timeout-ms".into(),
            self.queue
                .timeout
                .map_or(0.0, |t| t.as_secs_f64() * 1000.0)
                .to_string(),
            "--slo-ms".into(),
            self.slo_ms.to_string(),
            "--scenario".into(),
            self.change.name().into(),
        ];
        if let Some(dir) = &self.trace_dir {
            args.push("--trace-limit".into());
            args.push(dir.display().to_string());
        }
        args
    }
}
