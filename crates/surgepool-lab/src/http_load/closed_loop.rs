//! The closed loop: [`ClosedLoop`], every client sending its next request as soon as the
//! previous one is answered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use tokio::time::Instant;

use super::connection::preconnect;
use super::request::exchange;
use super::{RequestTemplate, Target};

/// A closed-loop run: `connections` clients each sending the next request as soon as the
/// previous one is answered, for `duration`. Measures throughput at full speed.
#[derive(Debug, Clone)]
pub(crate) struct ClosedLoop {
    pub(crate) target: Target,
    pub(crate) connections: usize,
    pub(crate) duration: Duration,
    pub(crate) deadline: Duration,
}

/// What a closed-loop run saw.
#[derive(Debug, Default)]
pub(crate) struct ClosedReport {
    pub(crate) statuses: BTreeMap<u16, u64>,
    pub(crate) errors: u64,
    pub(crate) elapsed: Duration,
}

impl ClosedReport {
    /// 2xx responses per second.
    pub(crate) fn ok_rps(&self) -> f64 {
        let ok: u64 = self
            .statuses
            .iter()
            .filter(|(c, _)| (200..300).contains(*c))
            .map(|(_, n)| n)
            .sum();
        ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs a closed-loop load.
pub(crate) async fn closed_loop(spec: ClosedLoop) -> anyhow::Result<ClosedReport> {
    ensure!(spec.connections > 0, "at least one connection is needed");
    let conns = preconnect(&spec.target, spec.connections).await?;
    let start = Instant::now();
    let end = start + spec.duration;
    let target = Arc::new(spec.target);
    let workers: Vec<_> = conns
        .into_iter()
        .map(|conn| {
            let target = target.clone();
            tokio::spawn(async move {
                let mut report = ClosedReport::default();
                let mut conn = Some(conn);
                while Instant::now() < end {
                    match tokio::time::timeout(
                        spec.deadline,
                        exchange(&mut conn, &target, &RequestTemplate::default()),
                    )
                    .await
                    {
                        Ok(Ok(status)) => *report.statuses.entry(status).or_default() += 1,
                        _ => {
                            conn = None;
                            report.errors += 1;
                        }
                    }
                }
                report
            })
        })
        .collect();
    let mut total = ClosedReport::default();
    for worker in workers {
        let r = worker.await.context("a load worker panicked")?;
        for (code, n) in r.statuses {
            *total.statuses.entry(code).or_default() += n;
        }
        total.errors += r.errors;
    }
    total.elapsed = start.elapsed();
    Ok(total)
}
