//! One run of one case: a fresh lab server with the adaptive layer on its own runtime,
//! closed-loop clients over loopback on another, and the layer's limit sampled every 50 ms
//! by a thread of its own (so a busy client runtime cannot delay the samples).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use surgepool_tower::AdmissionLayer;
use tokio::time::Instant;

use super::Case;
use crate::http_load::{exchange_answer, RequestTemplate, Target};
use crate::server::{self, Faults, LayerChoice, ServerConfig, Timeouts};
use crate::work::WorkKind;

/// How often the limit is sampled, and the width of the bins answers are counted in.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// A client tries again this long after a failed exchange.
const QUICK_RETRY: Duration = Duration::from_millis(2);

/// The share of `/work` requests that fail fast during the `errors` disturbance (per mille).
const ERROR_PER_MILLE: u32 = 200;

/// During `disconnects`, one client in this many gives up on its request after
/// [`GIVE_UP_AFTER`] and closes its connection.
const DISCONNECT_ONE_IN: usize = 8;
const GIVE_UP_AFTER: Duration = Duration::from_millis(10);

/// No request waits longer than this many service times (at least 5 s) for its answer.
const DEADLINE_SERVICES: u32 = 10;

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
    /// How long a client that does not honour `Retry-After` waits after a 503.
    pub(super) retry: Duration,
    /// The adaptive layer: `Adaptive` or `AdaptiveSlo`.
    pub(super) layer: LayerChoice,
}

impl RunSpec {
    pub(super) fn total(&self) -> Duration {
        self.before + self.during + self.after
    }

    fn bins(&self) -> usize {
        usize::try_from(self.total().as_nanos() / SAMPLE_EVERY.as_nanos()).unwrap_or(0) + 1
    }
}

/// What one run saw.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(super) struct RunTrace {
    /// The layer's limit every [`SAMPLE_EVERY`], from the start of the load.
    pub(super) limits: Vec<usize>,
    /// 2xx answers from `/work` per [`SAMPLE_EVERY`] bin, by when they arrived.
    pub(super) ok_per_bin: Vec<u64>,
    pub(super) ok: u64,
    pub(super) shed: u64,
    pub(super) errors_5xx: u64,
    /// Requests a client gave up on (the `disconnects` case), closing its connection.
    pub(super) gave_up: u64,
    /// Exchanges that failed on the wire or hit the deadline.
    pub(super) failed: u64,
    /// Admitted requests the layer's limiter counted as dropped (5xx answers and requests
    /// whose client left).
    pub(super) limiter_dropped: u64,
}

/// Runs one case once. Blocking: it builds its own runtimes and sampling thread.
pub(super) fn run(spec: RunSpec) -> anyhow::Result<RunTrace> {
    let faults = Arc::new(Faults::default());
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(spec.server_threads)
        .thread_name("server")
        .enable_all()
        .build()
        .context("building the server's runtime")?;
    let (app, layer) = server::app(ServerConfig {
        layer: spec.layer,
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
    let ok_bins: Arc<[AtomicU64]> = (0..spec.bins()).map(|_| AtomicU64::new(0)).collect();
    let start = Instant::now();
    let sampler = sample_limits(layer.clone(), start, spec.bins())?;
    let result = client_rt.block_on(load(spec, start, faults, work, hello, ok_bins.clone()));
    let _ = stop.send(());
    // Bounded: every client has finished, so the server only drains its last answers.
    server_rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    });
    server_rt.shutdown_timeout(Duration::from_secs(1));
    let mut trace = result?;
    trace.limits = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("the sampling thread panicked"))?;
    trace.ok_per_bin = ok_bins.iter().map(|n| n.load(Ordering::Relaxed)).collect();
    trace.limiter_dropped = layer.stats().limiter.dropped;
    Ok(trace)
}

/// Reads the layer's limit at `start + i × SAMPLE_EVERY` for `bins` samples, on a thread of
/// its own: each sample is taken at its own time, however busy the runtimes are.
fn sample_limits(
    layer: AdmissionLayer,
    start: Instant,
    bins: usize,
) -> anyhow::Result<std::thread::JoinHandle<Vec<usize>>> {
    let start = start.into_std();
    std::thread::Builder::new()
        .name("sampler".to_owned())
        .spawn(move || {
            let mut limits = Vec::with_capacity(bins);
            for i in 0..bins {
                let at = start + SAMPLE_EVERY * u32::try_from(i).unwrap_or(u32::MAX);
                std::thread::sleep(at.saturating_duration_since(std::time::Instant::now()));
                limits.push(layer.stats().limiter.limit);
            }
            limits
        })
        .context("starting the sampling thread")
}

/// The clients and the fault switch, until the run's end.
async fn load(
    spec: RunSpec,
    start: Instant,
    faults: Arc<Faults>,
    work: Target,
    hello: Target,
    ok_bins: Arc<[AtomicU64]>,
) -> anyhow::Result<RunTrace> {
    let end = start + spec.total();
    let faults_switch = tokio::spawn(async move {
        if spec.disturbed && spec.case == Case::Errors {
            tokio::time::sleep_until(start + spec.before).await;
            faults.fail_per_mille(ERROR_PER_MILLE);
            tokio::time::sleep_until(start + spec.before + spec.during).await;
            faults.fail_per_mille(0);
        }
    });
    let clients: Vec<_> = (0..spec.clients)
        .map(|index| {
            let client = Client {
                index,
                spec,
                start,
                end,
                work: work.clone(),
                hello: hello.clone(),
                ok_bins: ok_bins.clone(),
            };
            tokio::spawn(client.run())
        })
        .collect();
    let mut trace = RunTrace::default();
    for c in clients {
        let part = c.await.context("a client panicked")?;
        trace.ok += part.ok;
        trace.shed += part.shed;
        trace.errors_5xx += part.errors_5xx;
        trace.gave_up += part.gave_up;
        trace.failed += part.failed;
    }
    faults_switch.await.context("the fault switch panicked")?;
    Ok(trace)
}

/// One closed-loop client: the next request as soon as the last is answered, a short pause
/// (or the server's `Retry-After`, when this run honours it) after a 503 or a failure. A
/// fast 500 is followed at once by the next request, as a closed loop does.
struct Client {
    index: usize,
    spec: RunSpec,
    start: Instant,
    end: Instant,
    work: Target,
    hello: Target,
    ok_bins: Arc<[AtomicU64]>,
}

impl Client {
    async fn run(self) -> RunTrace {
        let spec = self.spec;
        let mut trace = RunTrace::default();
        let template = RequestTemplate::default();
        let deadline = spec
            .service
            .saturating_mul(DEADLINE_SERVICES)
            .max(Duration::from_secs(5));
        let mut conn = None;
        // xorshift64 seeded per client: the jitter of a client honouring `Retry-After`.
        let mut rng =
            0x9E37_79B9_7F4A_7C15_u64 ^ (self.index as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        loop {
            let now = Instant::now();
            if now >= self.end {
                break;
            }
            let since = now - self.start;
            let disturbing =
                spec.disturbed && since >= spec.before && since < spec.before + spec.during;
            let warming = spec.case == Case::Warmup && spec.disturbed && since < spec.before;
            let target = if warming { &self.hello } else { &self.work };
            let give_up = spec.case == Case::Disconnects
                && disturbing
                && self.index.is_multiple_of(DISCONNECT_ONE_IN);
            let wait = if give_up { GIVE_UP_AFTER } else { deadline };
            let exchange = exchange_answer(&mut conn, target, &template);
            let answer = match tokio::time::timeout(wait, exchange).await {
                Ok(Ok(answer)) => answer,
                outcome => {
                    // Dropping the connection closes it: the server sees the client leave.
                    conn = None;
                    if give_up && outcome.is_err() {
                        trace.gave_up += 1;
                    } else {
                        trace.failed += 1;
                        self.pause(QUICK_RETRY).await;
                    }
                    continue;
                }
            };
            match answer.status {
                200..=299 if !warming => {
                    trace.ok += 1;
                    let bin = (Instant::now() - self.start).as_nanos() / SAMPLE_EVERY.as_nanos();
                    if let Some(n) = usize::try_from(bin).ok().and_then(|b| self.ok_bins.get(b)) {
                        n.fetch_add(1, Ordering::Relaxed);
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
                            after.min(Duration::from_secs(60)).mul_f64(1.0 + jitter)
                        }
                        _ => spec.retry,
                    };
                    self.pause(pause).await;
                }
                500..=599 => trace.errors_5xx += 1,
                _ => {}
            }
        }
        trace
    }

    async fn pause(&self, pause: Duration) {
        tokio::time::sleep_until((Instant::now() + pause).min(self.end)).await;
    }
}
