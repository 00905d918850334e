//! Prometheus metrics on a `/metrics` route: the admission layer's and a pool's figures,
//! published from their snapshots at scrape time (nothing is recorded per request).
//!
//! Run: `cargo run -p surgepool-tower --features metrics --example prometheus_metrics`,
//! then `curl http://127.0.0.1:3000/work` and `curl http://127.0.0.1:3000/metrics`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::{extract::State, routing::get, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use surgepool::{metrics::Publisher, Limit, Pool};
use surgepool_tower::AdmissionLayer;

#[derive(Clone)]
struct Metrics {
    prometheus: PrometheusHandle,
    // Publishing reads snapshots; a mutex because a scrape publishes, and scrapes may race.
    publisher: Arc<Mutex<Publisher>>,
}

async fn metrics(State(m): State<Metrics>) -> String {
    m.publisher
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .publish();
    m.prometheus.render()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The recorder every `metrics` call in the process goes to.
    let prometheus = PrometheusBuilder::new().install_recorder()?;

    // Background work (say, confirmation emails) on a named pool: `pool="emails"`.
    let emails = Pool::builder().name("emails").queue_capacity(256).build()?;
    // Admission control for the API: `pool="api"`.
    let api = AdmissionLayer::builder()
        .name("api")
        .limit(Limit::adaptive())
        .build()?;

    let for_metrics = api.clone();
    let publisher = Publisher::new()
        .pool(&emails)
        .with(move || for_metrics.publish_metrics());
    let state = Metrics {
        prometheus,
        publisher: Arc::new(Mutex::new(publisher)),
    };

    let work_pool = emails.clone();
    let app = Router::new()
        .route(
            "/work",
            get(move || {
                let pool = work_pool.clone();
                async move {
                    // Fire and forget: the email goes out after the answer.
                    let sent = pool.try_spawn(async {
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    });
                    if sent.is_ok() {
                        "queued\n"
                    } else {
                        "busy\n"
                    }
                }
            })
            .layer(api),
        )
        // The metrics route sits outside the admission layer: a scrape must get through
        // exactly when the service is overloaded. In production, serve it on an admin port.
        .route("/metrics", get(metrics))
        .with_state(state);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    emails.shutdown_timeout(Duration::from_secs(5)).await;
    Ok(())
}
