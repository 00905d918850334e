//! HTTP request counts by route and status, lock-free: one atomic per (route, status code).
//! The middleware sits outermost, so it counts exactly the answers clients saw, 429s and 503s
//! from inner layers included.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response};

/// Route labels; a path that matches none is `other`.
pub(crate) const ROUTES: [&str; 5] = [
    "/api/hello",
    "/api/users/{id}",
    "/api/orders",
    "/api/quote",
    "other",
];
const STATUSES: usize = 500; // codes 100..=599

/// The counters.
#[derive(Debug)]
pub(crate) struct HttpMetrics {
    counts: Box<[AtomicU64]>,
    in_flight: AtomicU64,
}

impl HttpMetrics {
    pub(crate) fn new() -> Arc<HttpMetrics> {
        Arc::new(HttpMetrics {
            counts: (0..ROUTES.len() * STATUSES)
                .map(|_| AtomicU64::new(0))
                .collect(),
            in_flight: AtomicU64::new(0),
        })
    }

    fn route(path: &str) -> usize {
        match path {
            "/api/hello" => 0,
            "/api/orders" => 2,
            "/api/quote" => 3,
            p if p.starts_with("/api/users/") => 1,
            _ => 4,
        }
    }

    fn count(&self, route: usize, status: u16) {
        let status = usize::from(status.clamp(100, 599)) - 100;
        self.counts[route * STATUSES + status].fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text lines.
    pub(crate) fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.push_str("# TYPE orders_http_requests_total counter\n");
        for (i, c) in self.counts.iter().enumerate() {
            let v = c.load(Ordering::Relaxed);
            if v > 0 {
                let _ = writeln!(
                    out,
                    "orders_http_requests_total{{route=\"{}\",status=\"{}\"}} {v}",
                    ROUTES[i / STATUSES],
                    i % STATUSES + 100
                );
            }
        }
        let _ = writeln!(
            out,
            "orders_http_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
    }
}

/// When the request reached the service: deadlines inside (the orders route's) count from
/// here, so time spent in the admission queue is not given out twice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival(pub(crate) tokio::time::Instant);

/// The counting layer; it also stamps each request's [`Arrival`] and gives it a request id.
///
/// The request id is the `x-request-id` header: the client's if it sent one, else the next
/// number of a process-wide counter (unique per process, no RNG). It is echoed on the answer
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
    ids: Arc<AtomicU64>,
}

impl RecordLayer {
    pub(crate) fn new(metrics: Arc<HttpMetrics>) -> RecordLayer {
        RecordLayer {
            metrics,
            ids: Arc::default(),
        }
    }
}

impl<S> tower::Layer<S> for RecordLayer {
    type Service = Record<S>;

    fn layer(&self, inner: S) -> Record<S> {
        Record {
            inner,
            metrics: self.metrics.clone(),
            ids: self.ids.clone(),
        }
    }
}

/// The service of [`RecordLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Record<S> {
    inner: S,
    metrics: Arc<HttpMetrics>,
    ids: Arc<AtomicU64>,
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
        req.extensions_mut()
            .insert(Arrival(tokio::time::Instant::now()));
        let id = match req.headers().get(&X_REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = HeaderValue::from(self.ids.fetch_add(1, Ordering::Relaxed));
                req.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
                id
            }
        };
        let route = HttpMetrics::route(req.uri().path());
        self.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        RecordFuture {
            inner: self.inner.call(req),
            id: Some(id),
            counted: InFlight {
                metrics: self.metrics.clone(),
                route,
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// Counts the answer when it is ready; leaves the in-flight gauge when dropped, answered
    /// or not (a client that went away).
    pub(crate) struct RecordFuture<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
        counted: InFlight,
    }
}

struct InFlight {
    metrics: Arc<HttpMetrics>,
    route: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<F, RB, E> Future for RecordFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = ready!(this.inner.poll(cx));
        if let Ok(response) = &mut result {
            this.counted
                .metrics
                .count(this.counted.route, response.status().as_u16());
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
        assert_eq!(ids, ["0", "1"]);
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
        assert_eq!(metrics.in_flight.load(Ordering::Relaxed), 0);
    }
}
