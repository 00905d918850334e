//! axum behind the adaptive admission layer: past the limit, requests get a fast
//! `503 Service Unavailable` with `Retry-After` instead of piling up in memory.
//!
//! Run: `cargo run --release -p surgepool-tower --example axum_admission`, then
//! `curl -i http://127.0.0.1:3000/work` (or load it with `wrk -c 512 -d 10s`).

use std::time::Duration;

use axum::{routing::get, Router};
use surgepool::Limit;
use surgepool_tower::AdmissionLayer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // One layer per latency class: a 20 ms route and a 20 µs route sharing one adaptive
    // limit would teach it the wrong round-trip time.
    let work_admission = AdmissionLayer::builder()
        .limit(Limit::adaptive())
        // A short queue absorbs bursts; the deadline bounds how long a request may wait.
        .queue_capacity(64)
        .deadline(Duration::from_millis(200))
        .build()?;
    let app = Router::new()
        .route(
            "/work",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(20)).await; // a downstream call
                "done\n"
            })
            .layer(work_admission.clone()),
        )
        .route("/hello", get(|| async { "hello\n" }));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    println!("admission stats at exit: {:?}", work_admission.stats());
    Ok(())
}
