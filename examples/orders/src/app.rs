//! The router and the layer stack, in one `ServiceBuilder`, outermost first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::{HeaderValue, Request, StatusCode};
use hyper::body::Incoming;
use surgepool::Limit;
use surgepool_tower::AdmissionLayer;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::TraceLayer;

use crate::config::ServeConfig;
use crate::state::AppState;
use crate::{metrics, ratelimit, routes};

/// A body that stops sending for this long is cut off (408): a slow-body client cannot hold
/// a permit and a buffer for the whole request timeout.
const BODY_DEADLINE: Duration = Duration::from_secs(1);
/// The floor of the adaptive admission limit.
const ADMISSION_MIN: usize = 16;

/// The routes, without layers.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/hello", get(routes::hello::hello))
        .route("/api/users/{id}", get(routes::users::get_user))
        .route("/api/orders", post(routes::orders::create))
        .route("/api/quote", get(routes::quote::quote))
        .with_state(state)
}

/// The public service: the router inside the whole stack.
pub(crate) fn build(
    cfg: &ServeConfig,
    state: AppState,
    admission: AdmissionLayer,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<
        impl http_body::Body<Data = bytes::Bytes, Error = impl Into<axum::BoxError>> + Send + 'static,
    >,
    Error = std::convert::Infallible,
    Future = impl Send + 'static,
> + Clone
       + Send
       + Sync
       + 'static {
    let rate_limit =
        ratelimit::RateLimit::new(cfg.rate_limit, cfg.rate_burst, cfg.trusted_proxies.clone());
    let http_metrics = state.0.metrics.clone();
    ServiceBuilder::new()
        // Counts first, so the counts are what clients saw: every 429, 503 and 504 included.
        .layer(metrics::RecordLayer(http_metrics))
        // A request id before tracing, so every log line of a request carries it; echoed back.
        .layer(SetRequestIdLayer::x_request_id(Counter::default()))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::x_request_id())
        // A panic anywhere below becomes a 500 for this request only; the layers above still
        // count and log it.
        .layer(CatchPanicLayer::custom(panic_response))
        // Rate limit before anything costs: a flood from one client is refused for the price
        // of a hash lookup, and never takes admission permits from the others.
        .layer(ratelimit::RateLimitLayer(rate_limit))
        .map_response(IntoResponse::into_response)
        // The whole-request deadline covers the body, the admission queue and the handler.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            cfg.request_timeout,
        ))
        .map_response(IntoResponse::into_response)
        // Size and pace of the body, before admission: a body that cannot be taken should
        // not hold a permit.
        .layer(RequestBodyLimitLayer::new(cfg.body_limit))
        .map_response(IntoResponse::into_response)
        .layer(RequestBodyTimeoutLayer::new(BODY_DEADLINE))
        // Adaptive admission innermost: the limit it learns is the handlers' own latency,
        // not that of a slow client or a rate-limited burst.
        .layer(admission)
        .map_response(IntoResponse::into_response)
        .map_request(|req: Request<_>| req.map(Body::new))
        .service(router(state))
}

/// The admission layer (its stats go to `/metrics`).
///
/// The limit adapts, but never below [`ADMISSION_MIN`]: the service's requests mostly wait
/// (database, upstream), so even on two cores a few dozen in flight cost little, and a floor
/// keeps one slow route (a locked table) from starving the others down to a single permit.
pub(crate) fn admission(cfg: &ServeConfig) -> anyhow::Result<AdmissionLayer> {
    let limit = Limit::adaptive_builder()
        .min(ADMISSION_MIN)
        .initial(ADMISSION_MIN * 4)
        .build()?;
    Ok(AdmissionLayer::builder()
        .limit(limit)
        .queue_capacity(cfg.admission_queue)
        .deadline(cfg.request_timeout)
        .build()?)
}

fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(serde_json::json!({"error": "internal error"})),
    )
        .into_response()
}

/// Request ids from a counter: unique per process, no RNG, no uuid dependency.
#[derive(Debug, Clone, Default)]
struct Counter(std::sync::Arc<AtomicU64>);

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _req: &Request<B>) -> Option<RequestId> {
        let id = self.0.fetch_add(1, Ordering::Relaxed);
        Some(RequestId::new(HeaderValue::from(id)))
    }
}
