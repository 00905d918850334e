//! axum 0.8: `Router::layer` and `MethodRouter::layer` share one limit across the
//! per-request clones axum makes (the trap of axum#2582 and axum#2634). In-process, no sockets.

use std::sync::Arc;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use surgepool::Limit;
use surgepool_tower::{AdmissionLayer, Reason};
use tokio::sync::{mpsc, Semaphore};
use tower::ServiceExt;

/// A router whose `/slow` handler reports that it started, then waits for a go.
fn app(layer: &AdmissionLayer, started: mpsc::UnboundedSender<()>, go: Arc<Semaphore>) -> Router {
    Router::new()
        .route(
            "/slow",
            get(move || {
                let started = started.clone();
                let go = go.clone();
                async move {
                    started.send(()).unwrap();
                    go.acquire().await.unwrap().forget();
                    "done"
                }
            }),
        )
        .route("/hello", get(|| async { "hello" }))
        .layer(layer.clone())
}

fn request(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn router_layer_shares_one_limit_across_requests_and_routes() {
    let layer = AdmissionLayer::new(Limit::fixed(2)).unwrap();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let go = Arc::new(Semaphore::new(0));
    let router = app(&layer, started_tx, go.clone());

    // Two slow requests fill the limit (each `oneshot` uses its own clone of the router).
    let first = tokio::spawn(router.clone().oneshot(request("/slow")));
    let second = tokio::spawn(router.clone().oneshot(request("/slow")));
    started.recv().await.unwrap();
    started.recv().await.unwrap();
    assert_eq!(layer.limiter().in_flight(), 2);

    // A third request, even to another route, is shed at once.
    let shed = router.clone().oneshot(request("/hello")).await.unwrap();
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_eq!(shed.extensions().get::<Reason>(), Some(&Reason::Overloaded));

    go.add_permits(2);
    for handle in [first, second] {
        let response = handle.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "done");
    }
    assert_eq!(layer.limiter().in_flight(), 0);

    // Room again.
    let hello = router.oneshot(request("/hello")).await.unwrap();
    assert_eq!(hello.status(), StatusCode::OK);
    // Its body holds the permit until read to the end.
    assert_eq!(layer.limiter().in_flight(), 1);
    let body = hello.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "hello");
    assert_eq!(layer.limiter().in_flight(), 0);
    let stats = layer.stats();
    assert_eq!((stats.admitted, stats.overloaded), (3, 1));
    assert_eq!(stats.limiter.succeeded, 3);
}

#[tokio::test]
async fn method_router_layer_shares_one_limit() {
    // The exact shape of axum#2582: `get(handler).layer(...)`.
    let layer = AdmissionLayer::new(Limit::fixed(1)).unwrap();
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let go = Arc::new(Semaphore::new(0));
    let handler_go = go.clone();
    let router = Router::new().route(
        "/",
        get(move || {
            let started = started_tx.clone();
            let go = handler_go.clone();
            async move {
                started.send(()).unwrap();
                go.acquire().await.unwrap().forget();
            }
        })
        .layer(layer.clone()),
    );

    let first = tokio::spawn(router.clone().oneshot(request("/")));
    started.recv().await.unwrap();
    let shed = router.clone().oneshot(request("/")).await.unwrap();
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    go.add_permits(1);
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
}
