//! The open loop: [`OpenLoop`]'s fixed arrival schedule, one worker per connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context as _};
use tokio::time::Instant;

use super::connection::{preconnect, warm};
use super::raw::Conn;
use super::recorder::{Ending, Recorder};
use super::request::exchange_encoded;
use super::{LoadReport, RequestTemplate, Target};

/// An open-loop run: `rate` requests per second for `duration`, on at most `connections`
/// keep-alive connections.
#[derive(Debug, Clone)]
pub(crate) struct OpenLoop {
    pub(crate) target: Target,
    pub(crate) rate: f64,
    pub(crate) duration: Duration,
    pub(crate) connections: usize,
    /// Each request's limit from its actual send to the end of its response body.
    pub(crate) deadline: Duration,
    /// A cheap path to send one request to on every connection before the clock starts
    /// (the lab server's `/hello`), so the schedule does not measure first-use costs.
    pub(crate) warm_path: Option<String>,
    /// The latency SLO: 2xx responses within it of their intended send time are counted in
    /// [`LoadReport::ok_within_slo`].
    pub(crate) slo: Duration,
    /// The request sent on the schedule (the warm-up is always a `GET`).
    pub(crate) request: RequestTemplate,
}

struct Plan {
    target: Target,
    /// The request, encoded once for the whole run.
    request: Vec<u8>,
    head: bool,
    start: Instant,
    rate: f64,
    total: u64,
    cutoff: Instant,
    deadline: Duration,
    next: AtomicU64,
    recorder: Arc<Mutex<Recorder>>,
}

/// Runs an open-loop load. Needs a tokio runtime (multi-threaded preferably).
pub(crate) async fn open_loop(spec: OpenLoop) -> anyhow::Result<LoadReport> {
    ensure!(
        spec.rate.is_finite() && spec.rate > 0.0,
        "the rate must be above 0"
    );
    ensure!(spec.connections > 0, "at least one connection is needed");
    ensure!(!spec.duration.is_zero(), "the duration must be above 0");
    ensure!(!spec.deadline.is_zero(), "the deadline must be above 0");
    let total = (spec.rate * spec.duration.as_secs_f64()).round() as u64;
    ensure!(total > 0, "rate × duration is less than one request");
    // Open every connection before the clock starts, as wrk does: the schedule then measures
    // the server, not a burst of TCP handshakes.
    let mut conns = preconnect(&spec.target, spec.connections).await?;
    if let Some(path) = &spec.warm_path {
        conns = warm(conns, &spec.target.with_path(path)).await?;
    }

    let seconds = spec.duration.as_secs_f64().ceil() as usize;
    let start = Instant::now() + Duration::from_millis(10);
    let recorder = Arc::new(Mutex::new(Recorder::new(start, seconds, spec.slo)));
    let plan = Arc::new(Plan {
        target: spec.target.clone(),
        request: spec.request.encode(&spec.target),
        head: spec.request.is_head(),
        start,
        rate: spec.rate,
        total,
        cutoff: start + spec.duration + spec.deadline,
        deadline: spec.deadline,
        next: AtomicU64::new(0),
        recorder: recorder.clone(),
    });
    let workers: Vec<_> = conns
        .into_iter()
        .map(|conn| tokio::spawn(worker(plan.clone(), Some(conn))))
        .collect();
    for worker in workers {
        worker.await.context("a load worker panicked")?;
    }
    drop(plan);
    let r = Arc::try_unwrap(recorder)
        .map_err(|_| anyhow::anyhow!("a load worker outlived the run"))?
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a load worker panicked while recording"))?;
    Ok(r.into_report(total, spec.rate))
}

async fn worker(plan: Arc<Plan>, mut conn: Option<Conn>) {
    let record = |f: &mut dyn FnMut(&mut Recorder)| {
        let mut r = plan.recorder.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut r);
    };
    loop {
        let i = plan.next.fetch_add(1, Ordering::Relaxed);
        if i >= plan.total {
            break;
        }
        let intended = plan.start + Duration::from_secs_f64(i as f64 / plan.rate);
        tokio::time::sleep_until(intended).await;
        let sent_at = Instant::now();
        if sent_at > plan.cutoff {
            // Too late to send within the run's bound; the caller counts it as unsent.
            break;
        }
        record(&mut |r| r.sent(sent_at));
        let outcome = tokio::time::timeout(
            plan.deadline,
            exchange_encoded(&mut conn, plan.target.addr, &plan.request, plan.head),
        )
        .await;
        let done = Instant::now();
        let ending = match outcome {
            Ok(Ok(answer)) => Ending::Status(answer.status),
            // (`exchange_encoded` drops the connection after an error.)
            Ok(Err(_)) => Ending::Error,
            Err(_elapsed) => {
                // The connection is mid-request; it cannot be reused.
                conn = None;
                Ending::Timeout
            }
        };
        record(&mut |r| r.ended(ending, intended, sent_at, done));
    }
}
