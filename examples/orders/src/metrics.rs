//! HTTP request counts by route and status, lock-free: one atomic per (route, status code).
//! The middleware sits outermost, so it counts exactly the answers clients saw, 429s and 503s
//! from inner layers included.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::middleware::Next;
use axum::response::Response;
use http::Request;

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

struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// When the request reached the service: deadlines inside (the orders route's) count from
/// here, so time spent in the admission queue is not given out twice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival(pub(crate) tokio::time::Instant);

/// The counting middleware; it also stamps the request's [`Arrival`].
pub(crate) async fn record(
    State(metrics): State<Arc<HttpMetrics>>,
    mut req: Request<Body>,
    next: Next,
) -> Response {
    req.extensions_mut()
        .insert(Arrival(tokio::time::Instant::now()));
    let route = HttpMetrics::route(req.uri().path());
    metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    let _guard = InFlight(&metrics.in_flight);
    let response = next.run(req).await;
    metrics.count(route, response.status().as_u16());
    response
}
