//! The resolved parameters of one run, shared by the parent and (as arguments) the child.

use std::time::Duration;

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

    pub(crate) fn drain(&self) -> Duration {
        Duration::from_secs_f64(self.drain_s)
    }

    /// The arguments that make a child run `strategy` with these parameters.
    pub(crate) fn child_args(&self, strategy: &str) -> Vec<String> {
        vec![
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
        ]
    }
}
