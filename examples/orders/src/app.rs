//! The router and the layer stack, in one `ServiceBuilder`, outermost first.

use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::{Request, StatusCode};
use surgepool::Limit;
use surgepool_tower::AdmissionLayer;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

use crate::config::ServeConfig;
use crate::state::AppState;
use crate::{metrics, ratelimit, routes};

/// A body that stops sending for this long is cut off (408): a slow-body client cannot hold
/// a permit and a buffer for the whole request timeout.
const BODY_DEADLINE: Duration = Duration::from_secs(1);

/// The routes, without layers.
///
/// `/api/hello` is routed without the state: axum hands every call of a handler its own
/// clone of the router's state, and for `AppState` (an `Arc`) that is a count both cores
/// write on every request, for a handler that never reads it.
pub(crate) fn router(state: AppState) -> Router {
    let with_state = Router::new()
        .route("/api/users/{id}", get(routes::users::get_user))
        .route("/api/orders", post(routes::orders::create))
        .route("/api/quote", get(routes::quote::quote))
        .with_state(state);
    Router::new()
        .route("/api/hello", get(routes::hello::hello))
        .merge(with_state)
}

/// The public service: `routes` ([`router`]) inside the whole stack, counting into
/// `http_metrics`; for requests with any body (the listeners' `Incoming`, a test's `Body`).
pub(crate) fn build<B>(
    cfg: &ServeConfig,
    http_metrics: std::sync::Arc<metrics::HttpMetrics>,
    admission: AdmissionLayer,
    routes: Router,
) -> impl tower::Service<
    Request<B>,
    Response = Response<
        impl http_body::Body<Data = bytes::Bytes, Error = impl Into<axum::BoxError>> + Send + 'static,
    >,
    Error = std::convert::Infallible,
    Future = impl Send + 'static,
> + Clone
       + Send
       + Sync
       + 'static
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let rate_limit =
        ratelimit::RateLimit::new(cfg.rate_limit, cfg.rate_burst, cfg.trusted_proxies.clone());
    ServiceBuilder::new()
        // Counts first, so the counts are what clients saw: every 429, 503 and 504 included.
        // It also sets the request id (`x-request-id`, echoed on the answer) and logs: a span
        // per request, which every line the request logs is in, and a line per answer
        // (`src/request_log.rs`).
        .layer(metrics::RecordLayer::new(http_metrics))
        // A panic anywhere below becomes a 500 for this request only; the layers above still
        // count and log it.
        .layer(CatchPanicLayer::custom(panic_response))
        // Rate limit before anything costs: a flood from one client is refused for the price
        // of a hash lookup, and never takes admission permits from the others.
        .layer(ratelimit::RateLimitLayer(rate_limit))
        .map_response(timeout_answer)
        // The whole-request deadline covers the body, the admission queue and the handler.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            cfg.request_timeout,
        ))
        .map_response(IntoResponse::into_response)
        // Size and pace of the body, before admission: a body that cannot be taken should
        // not hold a permit.
        .layer(RequestBodyLimitLayer::new(cfg.body_limit))
        .layer(RequestBodyTimeoutLayer::new(BODY_DEADLINE))
        // Adaptive admission innermost: the limit it learns is the handlers' own latency,
        // not that of a slow client or a rate-limited burst.
        .layer(admission)
        .map_request(|req: Request<_>| req.map(Body::new))
        .service(routes)
}

/// The admission layer (its stats go to `/metrics`).
///
/// The limit adapts, but never below `--admission-min` (512). The orders route's latency is
/// the batcher's commit cycle: every order of one commit finishes at once, so a window of the
/// limit's samples is often one commit, its RTTs alike, and a slow commit (sub-millisecond
/// RTTs doubling) reads as a queue. With a floor of 16, a trace showed the limit cut from 64
/// to 16 within milliseconds, again and again, and 3.5 % of the orders refused at 17,000/s
/// while the admitted ones' p99 was 7 ms. A floor of one commit's worth of orders lets the
/// batcher group them; above it the limit still adapts, and the floor still bounds what
/// runs (the README's ladder: floor 16, 15,188 orders/s within the SLO; 512, about 31,000/s).
pub(crate) fn admission(cfg: &ServeConfig) -> anyhow::Result<AdmissionLayer> {
    let limit = Limit::adaptive_builder()
        .min(cfg.admission_min)
        .initial(cfg.admission_min)
        .build()?;
    Ok(AdmissionLayer::builder()
        .limit(limit)
        .queue_capacity(cfg.admission_queue)
        .deadline(cfg.request_timeout)
        .build()?)
}

/// The whole-request deadline's 504 (tower-http's, with an empty body) gets a body that says
/// what a client must assume, "outcome unknown": the orders route answers its own 504 first
/// (its deadline is shorter), but if the runtime was stalled past both, its write may have
/// begun. Any other answer passes unchanged.
fn timeout_answer<B>(answer: http::Response<B>) -> Response
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    if answer.status() == StatusCode::GATEWAY_TIMEOUT
        && answer.body().size_hint().exact() == Some(0)
    {
        return (
            StatusCode::GATEWAY_TIMEOUT,
            axum::Json(serde_json::json!({
                "error": "request deadline passed; outcome unknown"
            })),
        )
            .into_response();
    }
    answer.into_response()
}

fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(serde_json::json!({"error": "internal error"})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;
    use crate::config::Cli;
    use crate::metrics::HttpMetrics;

    /// A handler that panics costs its request a 500, which `/metrics` counts, and nothing
    /// else: its admission permit comes back and the next request is served.
    #[tokio::test]
    async fn a_panicking_handler_is_a_counted_500_and_the_service_goes_on() {
        let cfg = Cli::try_parse_from(["orders"])
            .unwrap()
            .serve
            .validate()
            .unwrap();
        let http_metrics = HttpMetrics::new();
        let admission = AdmissionLayer::builder()
            .limit(Limit::fixed(1))
            .queue_capacity(0)
            .build()
            .unwrap();
        let routes = Router::new()
            .route("/api/hello", get(|| async { "Hello" }))
            .route(
                "/api/quote",
                get(|| async {
                    if true {
                        panic!("a bug in a handler");
                    }
                    "unreachable"
                }),
            );
        let service = build(&cfg, http_metrics.clone(), admission, routes);
        let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();

        let answer = service.clone().oneshot(get("/api/quote")).await.unwrap();
        assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = answer.into_body().collect().await.ok().unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"error":"internal error"}"#);
        // One permit only: had the panic kept it, this would be a 503.
        let answer = service.oneshot(get("/api/hello")).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);

        let mut text = String::new();
        http_metrics.render(&mut text);
        assert!(
            text.contains("orders_http_requests_total{route=\"/api/quote\",status=\"500\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("orders_http_requests_total{route=\"/api/hello\",status=\"200\"} 1"),
            "{text}"
        );
        assert!(text.contains("orders_http_in_flight 0"), "{text}");
    }

    /// The allocations one `GET /api/hello` makes through `service` (the call, the answer and
    /// its body), on this thread, after a warm-up (thread-locals, the metrics shard, the
    /// admission reaper).
    fn allocations_per_hello<S, RB>(rt: &tokio::runtime::Runtime, service: S) -> u64
    where
        S: tower::Service<Request<Body>, Response = http::Response<RB>> + Clone,
        S::Error: std::fmt::Debug,
        RB: http_body::Body,
    {
        let get = || Request::get("/api/hello").body(Body::empty()).unwrap();
        for _ in 0..3 {
            let _ = rt.block_on(service.clone().oneshot(get()));
        }
        let (req, svc) = (get(), service.clone());
        let (n, body) = crate::routes::hello::tests::allocs(|| {
            rt.block_on(async move { svc.oneshot(req).await.unwrap().into_body().collect().await })
        });
        drop(body);
        n
    }

    /// The whole-request deadline's 504 says "outcome unknown", as every 504 that may leave
    /// a row behind must; a route's own 504 passes unchanged.
    #[tokio::test(start_paused = true)]
    async fn the_request_deadline_504_says_the_outcome_is_unknown() {
        let cfg = Cli::try_parse_from(["orders", "--request-timeout", "1000"])
            .unwrap()
            .serve
            .validate()
            .unwrap();
        let routes = Router::new()
            .route(
                "/stuck",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    "late"
                }),
            )
            .route(
                "/own",
                get(|| async { (StatusCode::GATEWAY_TIMEOUT, "nothing was written") }),
            );
        let service = build(&cfg, HttpMetrics::new(), admission(&cfg).unwrap(), routes);
        let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();

        let answer = service.clone().oneshot(get("/stuck")).await.unwrap();
        assert_eq!(answer.status(), StatusCode::GATEWAY_TIMEOUT);
        let body = answer.into_body().collect().await.ok().unwrap().to_bytes();
        assert_eq!(
            &body[..],
            br#"{"error":"request deadline passed; outcome unknown"}"#
        );

        let answer = service.oneshot(get("/own")).await.unwrap();
        assert_eq!(answer.status(), StatusCode::GATEWAY_TIMEOUT);
        let body = answer.into_body().collect().await.ok().unwrap().to_bytes();
        assert_eq!(&body[..], b"nothing was written");
    }

    /// What `GET /api/hello` allocates through the whole stack, against the same handler
    /// on a bare router, counted by the test binary's counting allocator on one thread.
    #[test]
    fn hello_through_the_stack_allocates_what_it_lists() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cfg = Cli::try_parse_from(["orders"])
            .unwrap()
            .serve
            .validate()
            .unwrap();
        let routes = || Router::new().route("/api/hello", get(crate::routes::hello::hello));
        let _guard = rt.enter();
        let stack = build(&cfg, HttpMetrics::new(), admission(&cfg).unwrap(), routes());
        let bare = routes();
        let stack_n = allocations_per_hello(&rt, stack);
        let bare_n = allocations_per_hello(&rt, bare);
        // The stack's own allocations, found with a backtrace per allocation (2026-12-05):
        // the request id (its buffer, and `freeze` making it a `Bytes`: 2), the test
        // request's empty header map taking that id (its first insert: 2; a parsed request's
        // map has room), the request body boxed once more after the layers (1; hyper's body
        // is boxed once either way in a real server), and the answer's body boxed by the
        // `IntoResponse` after the rate limit and after the timeout (2).
        assert!(
            stack_n <= bare_n + 7,
            "GET /api/hello through the stack allocates {stack_n} times, bare axum {bare_n}: \
             more than the 7 listed"
        );
    }
}
