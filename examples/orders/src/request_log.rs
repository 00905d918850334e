//! What a request logs: its span, which every line it logs is in, and one line for its answer.
//!
//! Done by the metrics layer ([`Record`](crate::metrics::Record)), which sees every request and
//! every answer anyway, rather than by tower-http's `TraceLayer`: that layer reads the clock
//! five times per request (at the call, at the answer, and twice per body frame) whether or not
//! anything is logged, and logs every 5xx at ERROR, so at three times the capacity it wrote an
//! ERROR line for every request the admission layer shed. Here the span is DEBUG (when DEBUG
//! is off it is not even built), the answer's line is DEBUG, and ERROR is kept for answers
//! that say something broke: a 500 (a panic, a database error), 502 and the like. A 503 or
//! 504 is the service shedding load or keeping a deadline, as designed: DEBUG, and counted on
//! `/metrics`.

use http::{Request, StatusCode};
use tokio::time::Instant;

use crate::metrics::X_REQUEST_ID;

/// The span of one request: method, URI and request id. At DEBUG; when DEBUG is off, nothing
/// is formatted or allocated.
pub(crate) fn request_span<B>(req: &Request<B>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %req.method(),
        uri = %req.uri(),
        id = ?req.headers().get(&X_REQUEST_ID),
    )
}

/// The answer's line, in the request's span (entered by the caller). The latency is read
/// only when the line is logged.
pub(crate) fn answered(status: StatusCode, arrival: Instant) {
    if broken(status) {
        tracing::error!(
            status = status.as_u16(),
            latency_ms = arrival.elapsed().as_secs_f64() * 1e3,
            "request failed"
        );
    } else {
        tracing::debug!(
            status = status.as_u16(),
            latency_ms = arrival.elapsed().as_secs_f64() * 1e3,
            "request answered"
        );
    }
}

/// A server error that is not load shedding (503) or a deadline (504).
fn broken(status: StatusCode) -> bool {
    status.is_server_error()
        && status != StatusCode::SERVICE_UNAVAILABLE
        && status != StatusCode::GATEWAY_TIMEOUT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_server_errors_that_are_not_shedding_or_deadlines_are_errors() {
        assert!(broken(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(broken(StatusCode::BAD_GATEWAY));
        assert!(!broken(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!broken(StatusCode::GATEWAY_TIMEOUT));
        assert!(!broken(StatusCode::TOO_MANY_REQUESTS));
        assert!(!broken(StatusCode::OK));
    }
}
