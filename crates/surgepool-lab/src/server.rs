//! The lab's HTTP server: an axum app whose `/work` handler does the overload experiment's
//! job (allocate and touch `alloc_kb`, then 20 ms of sleep or CPU), plus `/hello` (nothing)
//! and `/stats` (JSON counters, never behind the admission layer).
//!
//! `serve` runs it for any client; `http` runs it in child processes and drives it.

use std::future::Future;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use surgepool::Limit;
use surgepool_tower::AdmissionLayer;

/// Which admission layer sits in front of the handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayerChoice {
    /// No layer: every request runs (the "bare" server).
    None,
    /// `surgepool_tower::AdmissionLayer` with `Limit::adaptive()`.
    Adaptive,
    /// `surgepool_tower::AdmissionLayer` with `Limit::fixed(n)`.
    Fixed(usize),
}

impl FromStr for LayerChoice {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<LayerChoice> {
        match s {
            "none" => Ok(LayerChoice::None),
            "adaptive" => Ok(LayerChoice::Adaptive),
            _ => {
                let Some(n) = s.strip_prefix("fixed:") else {
                    bail!("unknown layer {s:?}: expected none, adaptive or fixed:<N>");
                };
                let n: usize = n
                    .parse()
                    .with_context(|| format!("fixed:<N> needs a whole number, got {n:?}"))?;
                if n == 0 {
                    bail!("fixed:<N> needs N >= 1 (0 would shed every request)");
                }
                Ok(LayerChoice::Fixed(n))
            }
        }
    }
}

impl std::fmt::Display for LayerChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerChoice::None => f.write_str("none"),
            LayerChoice::Adaptive => f.write_str("adaptive"),
            LayerChoice::Fixed(n) => write!(f, "fixed:{n}"),
        }
    }
}

/// What `/work` spends its time on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Work {
    /// Sleep (waiting work: a downstream call, a database).
    Sleep,
    /// A fixed amount of computation worth `service_time` of one core's CPU time, on a
    /// blocking thread (off the runtime's workers with `spawn_blocking`, as a careful axum
    /// user would). Fixed work, not "spin until the clock says 20 ms": under contention a
    /// job must take longer, as real CPU work does.
    Cpu,
}

/// The server's settings.
#[derive(Debug, Clone)]
pub(crate) struct ServerConfig {
    pub(crate) layer: LayerChoice,
    pub(crate) work: Work,
    pub(crate) service_time: Duration,
    pub(crate) alloc_bytes: usize,
    /// Admission queue capacity (0: shed at once). Needs `deadline`.
    pub(crate) queue: usize,
    pub(crate) deadline: Option<Duration>,
}

/// Counters the handlers keep, served at `/stats`.
#[derive(Debug, Default)]
struct Counters {
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    handled: AtomicU64,
}

#[derive(Debug, Clone)]
struct AppState {
    config: Arc<ServerConfig>,
    /// Iterations of [`burn`] worth `service_time` of CPU (0 for sleep work).
    cpu_iterations: u64,
    counters: Arc<Counters>,
    layer: Option<AdmissionLayer>,
}

/// Builds the app; returns the layer too so callers can read its counters.
pub(crate) fn app(config: ServerConfig) -> anyhow::Result<(Router, Option<AdmissionLayer>)> {
    let layer = match config.layer {
        LayerChoice::None => None,
        LayerChoice::Adaptive => Some(build_layer(Limit::adaptive(), &config)?),
        LayerChoice::Fixed(n) => Some(build_layer(Limit::fixed(n), &config)?),
    };
    let cpu_iterations = match config.work {
        Work::Sleep => 0,
        Work::Cpu => {
            let per_ms = calibrate_iterations_per_ms();
            (per_ms * config.service_time.as_secs_f64() * 1000.0).round() as u64
        }
    };
    let state = AppState {
        cpu_iterations,
        config: Arc::new(config),
        counters: Arc::default(),
        layer: layer.clone(),
    };
    let mut served = Router::new()
        .route("/work", get(work))
        .route("/hello", get(hello));
    if let Some(layer) = &layer {
        // One layer value = one limit shared by every route and every per-request clone.
        served = served.layer(layer.clone());
    }
    // Added after `.layer`, so `/stats` answers even when the server sheds everything else.
    let app = served.route("/stats", get(stats)).with_state(state);
    Ok((app, layer))
}

fn build_layer(limit: Limit, config: &ServerConfig) -> anyhow::Result<AdmissionLayer> {
    let mut builder = AdmissionLayer::builder()
        .limit(limit)
        .queue_capacity(config.queue);
    if let Some(deadline) = config.deadline {
        builder = builder.deadline(deadline);
    }
    builder.build().context("building the admission layer")
}

/// Counts a handler as in flight for as long as it runs (also when it is cancelled).
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn enter(counters: &'a Counters) -> InFlight<'a> {
        let now = counters.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        counters.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        InFlight(counters)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.handled.fetch_add(1, Ordering::Relaxed);
    }
}

/// The overload experiment's job: hold `alloc_bytes` (every page written, so it is resident)
/// for `service_time` of sleep or CPU.
async fn work(State(state): State<AppState>) -> impl IntoResponse {
    let _in_flight = InFlight::enter(&state.counters);
    let buffer = touched_buffer(state.config.alloc_bytes);
    let service_time = state.config.service_time;
    match state.config.work {
        Work::Sleep => tokio::time::sleep(service_time).await,
        Work::Cpu => {
            let iterations = state.cpu_iterations;
            let spun = tokio::task::spawn_blocking(move || burn(iterations)).await;
            if spun.is_err() {
                return (StatusCode::INTERNAL_SERVER_ERROR, "work panicked");
            }
        }
    }
    std::hint::black_box(&buffer);
    (StatusCode::OK, "done")
}

async fn hello() -> &'static str {
    "hello"
}

async fn stats(State(state): State<AppState>) -> impl IntoResponse {
    let c = &state.counters;
    let mut body = serde_json::json!({
        "layer": state.config.layer.to_string(),
        "in_flight": c.in_flight.load(Ordering::Relaxed),
        "peak_in_flight": c.peak_in_flight.load(Ordering::Relaxed),
        "handled": c.handled.load(Ordering::Relaxed),
        "cpu_iterations_per_job": state.cpu_iterations,
    });
    if let Some(layer) = &state.layer {
        let s = layer.stats();
        body["admission"] = serde_json::json!({
            "limit": s.limiter.limit,
            "admitted": s.admitted,
            "overloaded": s.overloaded,
            "queue_timeouts": s.queue_timeouts,
            "timeouts": s.timeouts,
            "queued": s.queued,
            "succeeded": s.limiter.succeeded,
            "dropped": s.limiter.dropped,
        });
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

/// Allocates `bytes` and writes one byte per 4 KiB page (the overload experiment's job), so
/// the memory is really resident: a zeroed allocation alone would be mapped lazily and never
/// show in RSS.
fn touched_buffer(bytes: usize) -> Vec<u8> {
    let mut buffer = vec![0u8; bytes];
    for i in (0..bytes).step_by(4096) {
        buffer[i] = 1;
    }
    buffer
}

/// `iterations` steps of a dependent multiply-add chain (about a nanosecond each), that the
/// optimiser cannot skip.
fn burn(iterations: u64) {
    let mut x = 0u64;
    for _ in 0..iterations {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    std::hint::black_box(x);
}

/// How many [`burn`] iterations take one millisecond of this thread's CPU time. The time is
/// the thread's own on-CPU time from `/proc/thread-self/schedstat`, so preemption by other
/// processes does not inflate it; without it, the fastest of several wall-clock runs.
fn calibrate_iterations_per_ms() -> f64 {
    const CHUNK: u64 = 2_000_000;
    burn(CHUNK); // warm up
    let mut best = 0.0f64;
    for _ in 0..5 {
        let (cpu0, wall0) = (thread_cpu_ns(), Instant::now());
        burn(CHUNK);
        let ns = match (cpu0, thread_cpu_ns()) {
            (Some(a), Some(b)) if b > a => (b - a) as f64,
            _ => wall0.elapsed().as_nanos() as f64,
        };
        best = best.max(CHUNK as f64 / ns * 1e6);
    }
    best
}

fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and lets
/// in-flight requests finish (axum's graceful shutdown). Returns when all connections are
/// closed.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Listen backlog: room for bursts of new connections. tokio's `TcpListener::bind` uses 128;
/// past it the kernel drops handshakes and clients stall for a SYN retransmit (1 s, 3 s, ...),
/// which a load test would then blame on the server.
const BACKLOG: u32 = 4096;

/// Binds `addr` with a deep backlog, with a clear error when it is taken.
pub(crate) async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let listen = || -> std::io::Result<tokio::net::TcpListener> {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(BACKLOG)
    };
    listen().with_context(|| format!("cannot listen on {addr}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_choice_parses_and_rejects() {
        assert_eq!("none".parse::<LayerChoice>().unwrap(), LayerChoice::None);
        assert_eq!(
            "adaptive".parse::<LayerChoice>().unwrap(),
            LayerChoice::Adaptive
        );
        assert_eq!(
            "fixed:16".parse::<LayerChoice>().unwrap(),
            LayerChoice::Fixed(16)
        );
        assert!("fixed:0".parse::<LayerChoice>().is_err());
        assert!("fixed:x".parse::<LayerChoice>().is_err());
        assert!("bogus".parse::<LayerChoice>().is_err());
    }

    #[test]
    fn touched_buffer_has_every_page_written() {
        let b = touched_buffer(10_000);
        assert_eq!(b.len(), 10_000);
        assert_eq!((b[0], b[4096], b[8192]), (1, 1, 1));
    }
}
