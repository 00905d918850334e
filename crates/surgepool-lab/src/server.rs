//! The lab's HTTP server: an axum app whose `/work` handler does the overload experiment's
//! job (allocate and touch `alloc_kb`, then 20 ms of sleep or CPU), plus `/hello` (nothing)
//! and `/stats` (JSON counters, never behind the admission layer).
//!
//! `serve` runs it for any client; `http` runs it in child processes and drives it.

use std::future::Future;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use surgepool::Limit;
use surgepool_tower::AdmissionLayer;

use crate::work::{Work, WorkKind};

mod conn;

pub(crate) use conn::Timeouts;

/// Which admission layer sits in front of the handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayerChoice {
    /// No layer: every request runs (the "bare" server).
    None,
    /// `surgepool_tower::AdmissionLayer` with `Limit::adaptive()`.
    Adaptive,
    /// `surgepool_tower::AdmissionLayer` with `Limit::adaptive_builder().slo(ms)`: the
    /// adaptive limit given a latency objective of this many milliseconds.
    AdaptiveSlo(u32),
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
                if let Some(ms) = s.strip_prefix("adaptive:slo=") {
                    let ms: u32 = ms.parse().with_context(|| {
                        format!("adaptive:slo=<MS> needs whole milliseconds, got {ms:?}")
                    })?;
                    if !(1..=crate::MAX_MS).contains(&ms) {
                        bail!(
                            "adaptive:slo=<MS> needs 1 <= MS <= {}, got {ms}",
                            crate::MAX_MS
                        );
                    }
                    return Ok(LayerChoice::AdaptiveSlo(ms));
                }
                let Some(n) = s.strip_prefix("fixed:") else {
                    bail!(
                        "unknown layer {s:?}: expected none, adaptive, adaptive:slo=<MS> or \
                         fixed:<N>"
                    );
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
            LayerChoice::AdaptiveSlo(ms) => write!(f, "adaptive:slo={ms}"),
            LayerChoice::Fixed(n) => write!(f, "fixed:{n}"),
        }
    }
}

/// The server's settings.
#[derive(Debug, Clone)]
pub(crate) struct ServerConfig {
    pub(crate) layer: LayerChoice,
    pub(crate) work: WorkKind,
    pub(crate) service_time: Duration,
    pub(crate) alloc_bytes: usize,
    /// Admission queue capacity (0: shed at once). Needs `deadline`.
    pub(crate) queue: usize,
    pub(crate) deadline: Option<Duration>,
    /// Failures to inject into `/work` (the `disturb` experiment); `None` for none.
    pub(crate) faults: Option<Arc<Faults>>,
}

/// Failures an experiment switches on while the server runs: a share of `/work` requests
/// answered at once with a 500, as when a downstream fails fast.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Out of every 1,000 `/work` requests, how many fail.
    fail_per_mille: AtomicU32,
    /// Requests seen while failing, to spread the failures evenly.
    seen: AtomicU64,
}

impl Faults {
    /// From now on, `per_mille` of every 1,000 `/work` requests fail fast (0 stops it; above
    /// 1,000 every request fails).
    pub(crate) fn fail_per_mille(&self, per_mille: u32) {
        self.fail_per_mille.store(per_mille, Ordering::Relaxed);
    }

    /// Whether this request fails. Deterministic: request `i` fails when `(i × 389) mod 1000`
    /// (a permutation of 0..1000) is below the share, so failures are spread, not bunched.
    fn fails_next(&self) -> bool {
        let per_mille = u64::from(self.fail_per_mille.load(Ordering::Relaxed));
        if per_mille == 0 {
            return false;
        }
        let i = self.seen.fetch_add(1, Ordering::Relaxed);
        (i % 1000) * 389 % 1000 < per_mille
    }
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
    counters: Arc<Counters>,
    layer: Option<AdmissionLayer>,
}

/// Builds the app; returns the layer too so callers can read its counters.
pub(crate) fn app(config: ServerConfig) -> anyhow::Result<(Router, Option<AdmissionLayer>)> {
    let layer = match config.layer {
        LayerChoice::None => None,
        LayerChoice::Adaptive => Some(build_layer(Limit::adaptive(), &config)?),
        LayerChoice::AdaptiveSlo(ms) => {
            let limit = Limit::adaptive_builder()
                .slo(Duration::from_millis(u64::from(ms)))
                .build()?;
            Some(build_layer(limit, &config)?)
        }
        LayerChoice::Fixed(n) => Some(build_layer(Limit::fixed(n), &config)?),
    };
    let state = AppState {
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

/// The overload experiment's unit of work ([`Work`]): allocate and touch `alloc_bytes`, then
/// `service_time` of sleep, CPU or both. CPU work runs on a blocking thread
/// (`spawn_blocking`), as a careful axum user would write it, so the runtime's workers stay
/// free to parse requests and answer 503s; sleep work runs in the handler.
async fn work(State(state): State<AppState>) -> impl IntoResponse {
    if state.config.faults.as_ref().is_some_and(|f| f.fails_next()) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "injected failure");
    }
    let _in_flight = InFlight::enter(&state.counters);
    let work = Work {
        kind: state.config.work,
        service: state.config.service_time,
        alloc_bytes: state.config.alloc_bytes,
    };
    match work.kind {
        WorkKind::Sleep => work.run().await,
        WorkKind::Cpu | WorkKind::Mixed => {
            let runtime = tokio::runtime::Handle::current();
            let done = tokio::task::spawn_blocking(move || runtime.block_on(work.run())).await;
            if done.is_err() {
                return (StatusCode::INTERNAL_SERVER_ERROR, "work panicked");
            }
        }
    }
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
    });
    if let Some(layer) = &state.layer {
        let s = layer.stats();
        body["admission"] = serde_json::json!({
            "limit": s.limiter.limit,
            "requests": s.requests,
            "admitted": s.admitted,
            "overloaded": s.overloaded,
            "queue_timeouts": s.queue_timeouts,
            "cancelled": s.cancelled,
            "timeouts": s.timeouts,
            "body_timeouts": s.body_timeouts,
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

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and lets
/// in-flight requests finish. Returns when all connections are closed. Connections are
/// closed by the server when they keep it waiting (see [`Timeouts`]).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    conn::serve(listener, app, timeouts, shutdown).await
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
        assert_eq!(
            "adaptive:slo=60".parse::<LayerChoice>().unwrap(),
            LayerChoice::AdaptiveSlo(60)
        );
        assert_eq!(LayerChoice::AdaptiveSlo(60).to_string(), "adaptive:slo=60");
        assert!("adaptive:slo=0".parse::<LayerChoice>().is_err());
        assert!("adaptive:slo=1.5".parse::<LayerChoice>().is_err());
        assert!("fixed:0".parse::<LayerChoice>().is_err());
        assert!("fixed:x".parse::<LayerChoice>().is_err());
        assert!("bogus".parse::<LayerChoice>().is_err());
    }

    #[test]
    fn faults_fail_the_share_asked_for_spread_out() {
        let faults = Faults::default();
        assert!(!(0..100).any(|_| faults.fails_next()));
        faults.fail_per_mille(200);
        let fails: Vec<bool> = (0..1000).map(|_| faults.fails_next()).collect();
        assert_eq!(fails.iter().filter(|&&f| f).count(), 200);
        // Spread: every 100 consecutive requests hold between 10 and 30 failures.
        for chunk in fails.chunks(100) {
            let n = chunk.iter().filter(|&&f| f).count();
            assert!((10..=30).contains(&n), "{n} failures in a chunk of 100");
        }
        faults.fail_per_mille(1000);
        assert!((0..1000).all(|_| faults.fails_next()));
        faults.fail_per_mille(0);
        assert!(!(0..100).any(|_| faults.fails_next()));
    }
}
