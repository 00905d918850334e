//! HTTP request counts by route and status, lock-free: one atomic per (route, status code).
//! The middleware sits outermost, so it counts exactly the answers clients saw, 429s and 503s
//! from inner layers included.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response};

use crate::request_log;

/// Route labels; a path that matches none is `other`.
pub(crate) const ROUTES: [&str; 5] = [
    "/api/hello",
    "/api/users/{id}",
    "/api/orders",
    "/api/quote",
    "other",
];
const STATUSES: usize = 500; // codes 100..=599

/// `/api/orders` in [`ROUTES`].
const ORDERS: usize = 2;

/// At most this many shards of counters (a power of two).
const MAX_SHARDS: usize = 64;

/// Numbers threads in the order they first count; the shard is this modulo the shards.
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_INDEX: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

/// Request ids are handed to threads in blocks of this many, so that giving one out is not an
/// atomic operation on a counter that every core shares.
const ID_BLOCK: u64 = 1024;

/// The next block of request ids to hand out.
static NEXT_ID_BLOCK: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's block: the next id and the end of the block.
    static IDS: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// A request id unique in this process (increasing on each thread, not across threads).
fn next_request_id() -> u64 {
    IDS.with(|ids| {
        let (mut next, mut end) = ids.get();
        if next == end {
            next = NEXT_ID_BLOCK.fetch_add(ID_BLOCK, Ordering::Relaxed);
            end = next.saturating_add(ID_BLOCK);
        }
        ids.set((next + 1, end));
        next
    })
}

/// The counters.
///
/// Sharded by thread: every request adds to a counter and to the in-flight gauge, and a
/// counter that both cores add to moves its cache line between them on every request (the
/// `/api/hello` profile: the metrics layer's atomics were its largest cost). Each runtime
/// thread adds to its own shard; `/metrics` sums them.
#[derive(Debug)]
pub(crate) struct HttpMetrics {
    shards: Box<[Shard]>,
}

/// One thread's counters, on cache lines of their own.
#[derive(Debug)]
#[repr(align(128))]
struct Shard {
    counts: Box<[AtomicU64]>,
    /// Requests begun minus requests ended on this shard's threads, wrapping: a request may
    /// end on another thread than it began on, so one shard can go "negative"; the sum is exact.
    in_flight: AtomicU64,
}

impl HttpMetrics {
    pub(crate) fn new() -> Arc<HttpMetrics> {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let shards = threads.next_power_of_two().min(MAX_SHARDS);
        Arc::new(HttpMetrics {
            shards: (0..shards)
                .map(|_| Shard {
                    counts: (0..ROUTES.len() * STATUSES)
                        .map(|_| AtomicU64::new(0))
                        .collect(),
                    in_flight: AtomicU64::new(0),
                })
                .collect(),
        })
    }

    /// This thread's shard.
    fn shard(&self) -> &Shard {
        &self.shards[THREAD_INDEX.with(|i| *i) & (self.shards.len() - 1)]
    }

    fn route(path: &str) -> usize {
        match path {
            "/api/hello" => 0,
            "/api/orders" => ORDERS,
            "/api/quote" => 3,
            p if p.starts_with("/api/users/") => 1,
            _ => 4,
        }
    }

    fn count(&self, route: usize, status: u16) {
        let status = usize::from(status.clamp(100, 599)) - 100;
        self.shard().counts[route * STATUSES + status].fetch_add(1, Ordering::Relaxed);
    }

    fn begin(&self) {
        self.shard().in_flight.fetch_add(1, Ordering::Relaxed);
    }

    fn end(&self) {
        self.shard().in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Requests in flight (summed over the shards, each read once: a sum taken while
    /// requests move may be off by those, never negative).
    pub(crate) fn in_flight(&self) -> u64 {
        let sum = self.shards.iter().fold(0u64, |sum, shard| {
            sum.wrapping_add(shard.in_flight.load(Ordering::Relaxed))
        });
        // Wrapped below zero: a request that ended on one shard after the sum read the shard
        // it began on.
        if sum > u64::MAX / 2 {
            0
        } else {
            sum
        }
    }

    /// Prometheus text lines.
    pub(crate) fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.push_str("# TYPE orders_http_requests_total counter\n");
        for i in 0..ROUTES.len() * STATUSES {
            let v: u64 = self
                .shards
                .iter()
                .map(|shard| shard.counts[i].load(Ordering::Relaxed))
                .sum();
            if v > 0 {
                let _ = writeln!(
                    out,
                    "orders_http_requests_total{{route=\"{}\",status=\"{}\"}} {v}",
                    ROUTES[i / STATUSES],
                    i % STATUSES + 100
                );
            }
        }
        let _ = writeln!(out, "orders_http_in_flight {}", self.in_flight());
    }
}

/// When the request reached the service: deadlines inside the orders route count from here,
/// so time spent in the admission queue is not given out twice. Set on that route's requests
/// only.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival(pub(crate) tokio::time::Instant);

/// The counting layer; it also stamps each request's [`Arrival`], gives it a request id, and
/// logs it ([`request_log`]: a span per request and a line per answer).
///
/// The request id is the `x-request-id` header: the client's if it sent one, else a number
/// unique in this process (no RNG; see [`next_request_id`]). It is echoed on the answer
/// unless the answer carries one already. Done here rather than with tower-http's
/// `SetRequestIdLayer` and `PropagateRequestIdLayer`, which are two more layers (a call, a
/// future and a header lookup each) around every request.
///
/// A hand-written tower layer rather than `axum::middleware::from_fn`: `from_fn` clones the
/// whole stack below it and boxes a future per request, and as the outermost layer that was
/// a measurable share of `/api/hello`'s cost.
#[derive(Debug, Clone)]
pub(crate) struct RecordLayer {
    metrics: Arc<HttpMetrics>,
}

impl RecordLayer {
    pub(crate) fn new(metrics: Arc<HttpMetrics>) -> RecordLayer {
        RecordLayer { metrics }
    }
}

impl<S> tower::Layer<S> for RecordLayer {
    type Service = Record<S>;

    fn layer(&self, inner: S) -> Record<S> {
        Record {
            inner,
            metrics: Arc::new(MetricsHandle(self.metrics.clone())),
        }
    }
}

/// The service of [`RecordLayer`].
///
/// Each request's future holds the metrics until it is answered. It holds them through an
/// `Arc` of this copy of the service, not the shared `Arc<HttpMetrics>`: a connection's
/// requests run on one thread at a time, so that count stays on its core, where the shared
/// one moved between the cores on every request. Hence the hand-written `Clone`.
#[derive(Debug)]
pub(crate) struct Record<S> {
    inner: S,
    metrics: Arc<MetricsHandle>,
}

/// One copy's handle on the shared metrics (see [`Record`]).
#[derive(Debug)]
struct MetricsHandle(Arc<HttpMetrics>);

impl std::ops::Deref for MetricsHandle {
    type Target = HttpMetrics;

    fn deref(&self) -> &HttpMetrics {
        &self.0
    }
}

impl<S: Clone> Clone for Record<S> {
    fn clone(&self) -> Self {
        Record {
            inner: self.inner.clone(),
            metrics: Arc::new(MetricsHandle(self.metrics.0.clone())),
        }
    }
}

/// The request id header, set on requests without one and echoed on every answer.
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

impl<S, B, RB> tower::Service<Request<B>> for Record<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = RecordFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let arrival = tokio::time::Instant::now();
        let route = HttpMetrics::route(req.uri().path());
        if route == ORDERS {
            // Only its handler reads it; an extension is an allocation and a map insert.
            req.extensions_mut().insert(Arrival(arrival));
        }
        let id = match req.headers().get(&X_REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = HeaderValue::from(next_request_id());
                req.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
                id
            }
        };
        let span = request_log::request_span(&req);
        self.metrics.begin();
        let inner = span.in_scope(|| self.inner.call(req));
        RecordFuture {
            inner,
            id: Some(id),
            counted: InFlight {
                metrics: self.metrics.clone(),
                route,
            },
            span,
            arrival,
        }
    }
}

pin_project_lite::pin_project! {
    /// Counts and logs the answer when it is ready, polling the inner future in the
    /// request's span; leaves the in-flight gauge when dropped, answered or not (a client
    /// that went away).
    pub(crate) struct RecordFuture<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
        counted: InFlight,
        span: tracing::Span,
        arrival: tokio::time::Instant,
    }
}

struct InFlight {
    metrics: Arc<MetricsHandle>,
    route: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.end();
    }
}

impl<F, RB, E> Future for RecordFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _in_span = this.span.enter();
        let mut result = ready!(this.inner.poll(cx));
        if let Ok(response) = &mut result {
            this.counted
                .metrics
                .count(this.counted.route, response.status().as_u16());
            request_log::answered(response.status(), *this.arrival);
            if let Some(id) = this.id.take() {
                response
                    .headers_mut()
                    .entry(X_REQUEST_ID.clone())
                    .or_insert(id);
            }
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use tower::{Layer, ServiceExt};

    use super::*;

    /// Answers 200 with the request's id as the body; with `own`, the answer carries an id of
    /// its own.
    fn echo(
        own: bool,
    ) -> impl tower::Service<Request<()>, Response = Response<String>, Error = ()> + Clone {
        tower::service_fn(move |req: Request<()>| async move {
            let seen = req.headers()[&X_REQUEST_ID].to_str().unwrap().to_owned();
            let mut response = Response::new(seen);
            if own {
                response
                    .headers_mut()
                    .insert(X_REQUEST_ID.clone(), HeaderValue::from_static("inner"));
            }
            Ok::<_, ()>(response)
        })
    }

    #[tokio::test]
    async fn requests_get_an_id_that_is_echoed_and_a_client_id_is_kept() {
        let metrics = HttpMetrics::new();
        let layer = RecordLayer::new(metrics.clone());
        let svc = layer.layer(echo(false));
        let mut ids = Vec::new();
        for _ in 0..2 {
            let res = svc.clone().oneshot(Request::new(())).await.unwrap();
            assert_eq!(res.headers()[&X_REQUEST_ID], res.body().as_str());
            ids.push(res.into_body());
        }
        // Numbers; one thread hands out consecutive ones.
        let ids: Vec<u64> = ids.iter().map(|id| id.parse().unwrap()).collect();
        assert_eq!(ids[1], ids[0] + 1, "{ids:?}");
        let req = Request::builder()
            .header(&X_REQUEST_ID, "client-7")
            .body(())
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(
            (
                res.headers()[&X_REQUEST_ID].to_str().unwrap(),
                res.body().as_str()
            ),
            ("client-7", "client-7")
        );
        // An answer that set its own id keeps it.
        let res = layer
            .layer(echo(true))
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(res.headers()[&X_REQUEST_ID], "inner");
        assert_eq!(res.headers().get_all(&X_REQUEST_ID).iter().count(), 1);
        assert_eq!(metrics.in_flight(), 0);
    }

    /// Counts from many threads add up, and a request that begins on one thread and ends on
    /// another leaves the gauge at zero.
    #[test]
    fn counts_and_the_gauge_add_up_across_threads() {
        let metrics = HttpMetrics::new();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        metrics.count(0, 200);
                    }
                    metrics.begin();
                });
            }
        });
        assert_eq!(metrics.in_flight(), 8);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| metrics.end());
            }
        });
        let mut text = String::new();
        metrics.render(&mut text);
        assert!(
            text.contains("orders_http_requests_total{route=\"/api/hello\",status=\"200\"} 8000"),
            "{text}"
        );
        assert!(text.contains("orders_http_in_flight 0\n"), "{text}");
    }

    /// With DEBUG on, the inner service is called and polled in the request's span, so every
    /// line a handler logs names its request.
    #[tokio::test]
    async fn the_inner_service_runs_in_the_request_span() {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_test_writer()
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let in_span = || {
            tracing::Span::current()
                .metadata()
                .is_some_and(|m| m.name() == "request")
        };
        let inner = tower::service_fn(move |_req: Request<()>| {
            let called = in_span();
            async move {
                tokio::task::yield_now().await;
                Ok::<_, ()>(Response::new((called, in_span())))
            }
        });
        let svc = RecordLayer::new(HttpMetrics::new()).layer(inner);
        let res = svc.oneshot(Request::new(())).await.unwrap();
        assert_eq!(*res.body(), (true, true), "(called, polled) in the span");
    }

    /// The arrival stamp goes on the orders route's requests, the only ones that read it.
    #[tokio::test]
    async fn orders_requests_carry_their_arrival() {
        let inner = tower::service_fn(|req: Request<()>| async move {
            Ok::<_, ()>(Response::new(req.extensions().get::<Arrival>().is_some()))
        });
        let svc = RecordLayer::new(HttpMetrics::new()).layer(inner);
        for (path, stamped) in [("/api/orders", true), ("/api/hello", false)] {
            let req = Request::builder().uri(path).body(()).unwrap();
            let res = svc.clone().oneshot(req).await.unwrap();
            assert_eq!(*res.body(), stamped, "{path}");
        }
    }
}
