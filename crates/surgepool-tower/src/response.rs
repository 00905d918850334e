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
}

impl OverloadResponse {
    /// `status` (e.g. 503 or 429) with an empty body and, if given, a `Retry-After` header in
    /// whole seconds (rounded up, at least 1).
    pub fn http(status: StatusCode, retry_after: Option<Duration>) -> OverloadResponse {
        let retry_after = retry_after.map(|d| {
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            HeaderValue::from(secs.max(1))
        });
        OverloadResponse::custom(move |_reason| {
            let mut response = Response::new(Bytes::new());
            *response.status_mut() = status;
            if let Some(value) = &retry_after {
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, value.clone());
            }
            response
        })
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
    pub fn custom<F>(make: F) -> OverloadResponse
    where
        F: Fn(Reason) -> Response<Bytes> + Send + Sync + 'static,
    {
        OverloadResponse {
            make: Arc::new(make),
        }
    }

    /// Builds the response for one shed request.
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
        f.debug_struct("OverloadResponse").finish_non_exhaustive()
    }
}
