//! `orders upstream`: a deliberately flaky quote service for tests and load runs. Each
//! `GET /quote` waits `delay_ms`, then fails with 500 at `fail_rate`. `POST
//! /control?fail_rate=X&delay_ms=N` changes both at run time, so a test can make the upstream
//! fail and then recover without restarting it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::StatusCode;
use serde::Deserialize;

use crate::config::UpstreamConfig;
use crate::net;

#[derive(Debug, Default)]
struct Behaviour {
    fail_rate_bits: AtomicU64,
    delay_ms: AtomicU64,
    served: AtomicU64,
}

#[derive(Debug, Deserialize)]
struct Control {
    fail_rate: Option<f64>,
    delay_ms: Option<u64>,
}

pub(crate) fn run(cfg: UpstreamConfig) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let behaviour = Arc::new(Behaviour::default());
        behaviour
            .fail_rate_bits
            .store(cfg.fail_rate.to_bits(), Ordering::Relaxed);
        behaviour.delay_ms.store(cfg.delay_ms, Ordering::Relaxed);
        let app = Router::new()
            .route("/quote", get(quote))
            .route("/control", post(control))
            .with_state(behaviour);
        let listener = net::bind(cfg.addr, "listening on").await?;
        let limits = net::ConnLimits {
            header_read: Duration::from_secs(5),
            idle: Duration::from_secs(60),
        };
        net::serve(
            listener,
            app,
            limits,
            crate::serve::signal(),
            Duration::from_secs(1),
        )
        .await;
        Ok(())
    })
}

async fn quote(State(b): State<Arc<Behaviour>>) -> Response {
    let delay = b.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let n = b.served.fetch_add(1, Ordering::Relaxed);
    if fastrand::f64() < f64::from_bits(b.fail_rate_bits.load(Ordering::Relaxed)) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "upstream failure").into_response();
    }
    let price = 100.0 + (n % 100) as f64 / 10.0;
    axum::Json(serde_json::json!({"symbol": "ORD", "price": price})).into_response()
}

async fn control(State(b): State<Arc<Behaviour>>, Query(c): Query<Control>) -> Response {
    if let Some(rate) = c.fail_rate {
        if !(0.0..=1.0).contains(&rate) {
            return (StatusCode::BAD_REQUEST, "fail_rate must be within 0..=1").into_response();
        }
        b.fail_rate_bits.store(rate.to_bits(), Ordering::Relaxed);
    }
    if let Some(delay) = c.delay_ms {
        b.delay_ms.store(delay.min(60_000), Ordering::Relaxed);
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `orders bare`: the same hello handler with nothing around it, on `axum::serve`.
pub(crate) fn run_bare(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let app = Router::new().route("/api/hello", get(crate::routes::hello::hello));
        let listener = net::bind(addr, "listening on").await?;
        axum::serve(listener, app)
            .with_graceful_shutdown(crate::serve::signal())
            .await?;
        Ok(())
    })
}
