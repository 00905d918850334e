//! One run of one case: a fresh lab server with the adaptive layer on its own runtime,
//! closed-loop clients over loopback on another, and the layer's limit sampled every 50 ms.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::time::Instant;

use super::Case;
use crate::http_load::{exchange_answer, RequestTemplate, Target};
use crate::server::{self, Faults, LayerChoice, ServerConfig, Timeouts};
use crate::work::WorkKind;

/// How often the limit is sampled.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// A client that does not honour `Retry-After` tries again this long after a 503 (the
/// issue's contrast: "with a 2 ms retry it reaches about 290").
const QUICK_RETRY: Duration = Duration::from_millis(2);

/// The share of `/work` requests that fail fast during the `errors` disturbance (per mille).
const ERROR_PER_MILLE: u32 = 200;

/// During `disconnects`, one client in this many gives up on its request after
/// [`GIVE_UP_AFTER`] and closes its connection.
const DISCONNECT_ONE_IN: usize = 8;
const GIVE_UP_AFTER: Duration = Duration::from_millis(10);

/// No request waits longer than this for its answer.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// What one run is asked to do.
#[derive(Debug, Clone, Copy)]
pub(super) struct RunSpec {
    pub(super) case: Case,
    /// `false`: the control run, the same load without the disturbance.
    pub(super) disturbed: bool,
    pub(super) clients: usize,
    pub(super) before: Duration,
    pub(super) during: Duration,
    pub(super) after: Duration,
    pub(super) service: Duration,
    pub(super) alloc_bytes: usize,
    pub(super) server_threads: usize,
}

impl RunSpec {
    pub(super) fn total(&self) -> Duration {
        self.before + self.during + self.after
    }
}

/// What one run saw.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(super) struct RunTrace {
    /// The layer's limit every [`SAMPLE_EVERY`], from the start of the load.
    pub(super) limits: Vec<usize>,
    /// 2xx answers from `/work` per second of the run (whole seconds from the start).
    pub(super) ok_by_second: Vec<u64>,
    pub(super) ok: u64,
    pub(super) shed: u64,
    pub(super) errors_5xx: u64,
    /// Requests the clients gave up on (the `disconnects` case) or that failed on the wire.
    pub(super) abandoned: u64,
}

/// Runs one case once. Blocking: it builds its own runtimes.
pub(super) fn run(spec: RunSpec) -> anyhow::Result<RunTrace> {
    let faults = Arc::new(Faults::default());
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(spec.server_threads)
        .thread_name("server")
        .enable_all()
        .build()
        .context("building the server's runtime")?;
    let (app, layer) = server::app(ServerConfig {
        layer: LayerChoice::Adaptive,
        work: WorkKind::Sleep,
        service_time: spec.service,
        alloc_bytes: spec.alloc_bytes,
        queue: 0,
        deadline: None,
        faults: Some(faults.clone()),
    })?;
    let layer = layer.context("the adaptive layer is built")?;
    let listener = server_rt.block_on(server::bind("127.0.0.1:0".parse()?))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = server_rt.spawn(server::serve(listener, app, Timeouts::default(), async {
        let _ = stopped.await;
    }));

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("clients")
        .enable_all()
        .build()
        .context("building the clients' runtime")?;
    let work = Target::parse_loopback(&format!("http://{addr}/work"))?;
    let hello = Target::parse_loopback(&format!("http://{addr}/hello"))?;
    let trace = client_rt.block_on(async move {
        let start = Instant::now();
        let end = start + spec.total();
        let sampler = {
            let layer = layer.clone();
            tokio::spawn(async move {
                let mut limits = Vec::new();
                let mut tick = tokio::time::interval_at(start, SAMPLE_EVERY);
                while Instant::now() < end {
                    tick.tick().await;
                    limits.push(layer.stats().limiter.limit);
                }
                limits
            })
        };
        let faults_switch = {
            let faults = faults.clone();
            tokio::spawn(async move {
                if spec.disturbed && spec.case == Case::Errors {
                    tokio::time::sleep_until(start + spec.before).await;
                    faults.fail_per_mille(ERROR_PER_MILLE);
                    tokio::time::sleep_until(start + spec.before + spec.during).await;
                    faults.fail_per_mille(0);
                }
            })
        };
        let seconds = usize::try_from(spec.total().as_secs()).unwrap_or(0) + 1;
        let clients: Vec<_> = (0..spec.clients)
            .map(|index| {
                let (work, hello) = (work.clone(), hello.clone());
                tokio::spawn(client(index, spec, start, end, work, hello, seconds))
            })
            .collect();
        let mut trace = RunTrace {
            ok_by_second: vec![0; seconds],
            ..RunTrace::default()
        };
        for c in clients {
            let part = c.await.context("a client panicked")?;
            trace.ok += part.ok;
            trace.shed += part.shed;
            trace.errors_5xx += part.errors_5xx;
            trace.abandoned += part.abandoned;
            for (total, n) in trace.ok_by_second.iter_mut().zip(part.ok_by_second) {
                *total += n;
            }
        }
        faults_switch.await.context("the fault switch panicked")?;
        trace.limits = sampler.await.context("the sampler panicked")?;
        anyhow::Ok(trace)
    })?;
    let _ = stop.send(());
    // Bounded: every client has finished, so the server only drains its last answers.
    server_rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    });
    server_rt.shutdown_timeout(Duration::from_secs(1));
    Ok(trace)
}

/// One closed-loop client: the next request as soon as the last is answered, a short pause
/// (or the server's `Retry-After`, when this run honours it) after a 503.
async fn client(
    index: usize,
    spec: RunSpec,
    start: Instant,
    end: Instant,
    work: Target,
    hello: Target,
    seconds: usize,
) -> RunTrace {
    let mut trace = RunTrace {
        ok_by_second: vec![0; seconds],
        ..RunTrace::default()
    };
    let template = RequestTemplate::default();
    let mut conn = None;
    // xorshift64 seeded per client: the jitter of a client honouring `Retry-After`.
    let mut rng =
        0x9E37_79B9_7F4A_7C15_u64 ^ (index as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let since = now - start;
        let disturbing =
            spec.disturbed && since >= spec.before && since < spec.before + spec.during;
        let warming = spec.case == Case::Warmup && spec.disturbed && since < spec.before;
        let target = if warming { &hello } else { &work };
        let give_up =
            spec.case == Case::Disconnects && disturbing && index.is_multiple_of(DISCONNECT_ONE_IN);
        let wait = if give_up {
            GIVE_UP_AFTER
        } else {
            REQUEST_DEADLINE
        };
        let answer =
            tokio::time::timeout(wait, exchange_answer(&mut conn, target, &template)).await;
        let answer = match answer {
            Ok(Ok(answer)) => answer,
            _ => {
                // Dropping the connection closes it: the server sees the client leave.
                conn = None;
                trace.abandoned += 1;
                continue;
            }
        };
        match answer.status {
            200..=299 if !warming => {
                trace.ok += 1;
                let second =
                    usize::try_from((Instant::now() - start).as_secs()).unwrap_or(usize::MAX);
                if let Some(n) = trace.ok_by_second.get_mut(second) {
                    *n += 1;
                }
            }
            503 => {
                trace.shed += 1;
                let pause = match answer.retry_after {
                    Some(after) if spec.case == Case::RetryAfter && spec.disturbed => {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        // 0–50 % jitter, as clients spreading their retries do.
                        let jitter = (rng >> 11) as f64 / (1u64 << 53) as f64 * 0.5;
                        after.mul_f64(1.0 + jitter).min(Duration::from_secs(60))
                    }
                    _ => QUICK_RETRY,
                };
                tokio::time::sleep_until((Instant::now() + pause).min(end)).await;
            }
            500..=599 => trace.errors_5xx += 1,
            _ => {}
        }
    }
    trace
}
