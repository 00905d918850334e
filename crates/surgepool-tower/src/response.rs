//! The answer a shed request gets: HTTP 503 with `Retry-After` by default, gRPC `UNAVAILABLE`
//! for tonic, or whatever a closure builds.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

/// Why a request was answered by the layer instead of the inner service.
///
/// The layer also inserts it as a response extension, so logging and metrics layers outside
/// it can tell a shed request from a 503 of the handler.
///
/// A shed response carries it: see the [example on `Admission`](crate::Admission#examples).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The limit was reached and the queue was full (or there is no queue).
    Overloaded,
    /// The deadline passed while the request waited in the queue.
    QueueTimeout,
    /// The deadline passed while the inner service worked on the request; the inner future
    /// was dropped (cancelled).
    Timeout,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Overloaded => "overloaded",
            Reason::QueueTimeout => "timed out in the admission queue",
            Reason::Timeout => "timed out",
        })
    }
}

type MakeResponse = dyn Fn(Reason) -> Response<Bytes> + Send + Sync;

/// Builds the response for a shed request.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use http::StatusCode;
/// use surgepool_tower::{OverloadResponse, Reason};
///
/// // 429 and "retry in 2 s" instead of the default 503 / 1 s:
/// let r = OverloadResponse::http(StatusCode::TOO_MANY_REQUESTS, Some(Duration::from_secs(2)));
/// let response = r.make(Reason::Overloaded);
/// assert_eq!(response.status(), 429);
/// assert_eq!(response.headers()["retry-after"], "2");
///
/// // Anything else, from a closure:
/// let r = OverloadResponse::custom(|reason| {
///     http::Response::builder()
///         .status(503)
///         .header("x-shed", reason.to_string())
///         .body("busy, try again".into())
///         .unwrap()
/// });
/// assert_eq!(r.make(Reason::Timeout).headers()["x-shed"], "timed out");
/// ```
#[derive(Clone)]
pub struct OverloadResponse {
    make: Arc<MakeResponse>,
    /// The `Retry-After` asked of [`http`](Self::http), as given (the layer's builder checks
    /// it against [`MAX_RETRY_AFTER`](Self::MAX_RETRY_AFTER)).
    retry_after: Option<Duration>,
}

impl OverloadResponse {
    /// The longest `Retry-After` the layer sends: 2³¹ − 1 seconds (about 68 years).
    ///
    /// RFC 9111 §1.2.2 asks recipients of a delta-seconds value to support at least 31 bits
    /// and to treat larger values as 2³¹; a longer delay would overflow the 32-bit integer
    /// many clients parse it into. [`http`](Self::http) saturates at this value, and
    /// [`AdmissionLayerBuilder::build`](crate::AdmissionLayerBuilder::build) rejects a longer
    /// one, which is almost surely a mistake (a `Duration::MAX` meant as "forever").
    ///
    /// ```
    /// use http::StatusCode;
    /// use surgepool_tower::{AdmissionLayer, OverloadResponse};
    ///
    /// let too_long = OverloadResponse::MAX_RETRY_AFTER * 2;
    /// let r = OverloadResponse::http(StatusCode::SERVICE_UNAVAILABLE, Some(too_long));
    /// let err = AdmissionLayer::builder().overload_response(r).build().unwrap_err();
    /// assert_eq!(err.setting(), "overload_response");
    /// ```
    pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(i32::MAX as u64);

    /// `status` (e.g. 503 or 429) with an empty body and, if given, a `Retry-After` header in
    /// whole seconds (rounded up, at least 1, at most
    /// [`MAX_RETRY_AFTER`](Self::MAX_RETRY_AFTER): any `Duration` is accepted, even
    /// `Duration::MAX`, and never overflows).
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::StatusCode;
    /// use surgepool_tower::{OverloadResponse, Reason};
    ///
    /// let r = OverloadResponse::http(StatusCode::SERVICE_UNAVAILABLE, Some(Duration::MAX));
    /// assert_eq!(r.make(Reason::Overloaded).headers()["retry-after"], "2147483647");
    /// assert_eq!(r.retry_after(), Some(Duration::MAX));
    /// ```
    pub fn http(status: StatusCode, retry_after: Option<Duration>) -> OverloadResponse {
        let header = retry_after.map(|d| HeaderValue::from(retry_after_secs(d)));
        let mut response = OverloadResponse::custom(move |_reason| {
            let mut response = Response::new(Bytes::new());
            *response.status_mut() = status;
            if let Some(value) = &header {
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, value.clone());
            }
            response
        });
        response.retry_after = retry_after;
        response
    }

    /// The `Retry-After` this response was built with by [`http`](Self::http), as given
    /// (before rounding and saturation); `None` for other responses.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// A gRPC "trailers-only" `UNAVAILABLE` (code 14) response: HTTP 200,
    /// `content-type: application/grpc`, `grpc-status: 14` and a `grpc-message` saying why.
    /// Clients (tonic included) read it as `Status::unavailable`, which their retry policies
    /// treat as safe to retry.
    ///
    /// ```
    /// use surgepool_tower::{OverloadResponse, Reason};
    ///
    /// let response = OverloadResponse::grpc_unavailable().make(Reason::Overloaded);
    /// assert_eq!(response.status(), 200);
    /// assert_eq!(response.headers()["grpc-status"], "14");
    /// ```
    pub fn grpc_unavailable() -> OverloadResponse {
        OverloadResponse::custom(|reason| {
            let mut response = Response::new(Bytes::new());
            let headers = response.headers_mut();
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            headers.insert("grpc-status", HeaderValue::from_static("14"));
            let message = match reason {
                Reason::Overloaded => "overloaded",
                Reason::QueueTimeout => "timed out in the admission queue",
                Reason::Timeout => "timed out",
            };
            headers.insert("grpc-message", HeaderValue::from_static(message));
            response
        })
    }

    /// Any response, built by `make` for each shed request.
    ///
    /// See the [example on `OverloadResponse`](OverloadResponse#examples).
    pub fn custom<F>(make: F) -> OverloadResponse
    where
        F: Fn(Reason) -> Response<Bytes> + Send + Sync + 'static,
    {
        OverloadResponse {
            make: Arc::new(make),
            retry_after: None,
        }
    }

    /// Builds the response for one shed request.
    ///
    /// See the [example on `OverloadResponse`](OverloadResponse#examples).
    pub fn make(&self, reason: Reason) -> Response<Bytes> {
        (self.make)(reason)
    }
}

impl Default for OverloadResponse {
    /// `503 Service Unavailable` with `Retry-After: 1`.
    fn default() -> OverloadResponse {
        OverloadResponse::http(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(Duration::from_secs(1)),
        )
    }
}

impl fmt::Debug for OverloadResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverloadResponse")
            .field("retry_after", &self.retry_after)
            .finish_non_exhaustive()
    }
}

/// Whole seconds for a `Retry-After` of `d`: rounded up (a client told "0" would retry at
/// once, which is what shedding tries to prevent), at least 1, and saturated at
/// [`OverloadResponse::MAX_RETRY_AFTER`] (the `+ 1` of the rounding overflowed for
/// `Duration::MAX`).
fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    secs.clamp(1, OverloadResponse::MAX_RETRY_AFTER.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_saturates() {
        let cases = [
            (Duration::ZERO, 1),
            (Duration::from_nanos(1), 1),
            (Duration::from_secs(1), 1),
            (Duration::from_millis(1_001), 2),
            (Duration::from_secs(i32::MAX as u64), i32::MAX as u64),
            (Duration::from_secs(i32::MAX as u64 + 1), i32::MAX as u64),
            (Duration::new(u64::MAX, 0), i32::MAX as u64),
            (Duration::MAX, i32::MAX as u64),
        ];
        for (d, secs) in cases {
            assert_eq!(retry_after_secs(d), secs, "{d:?}");
        }
    }
}
