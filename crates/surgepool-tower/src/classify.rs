//! How a response maps to what the limiter learns: a success (with its latency), a drop
//! (a signal of overload: the limit backs off) or nothing at all.

use std::fmt;

use http::{HeaderMap, StatusCode};

/// What one finished request tells the limiter.
///
/// See the [example on `Classify`](Classify).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The request was served; its latency is a sample of the service time.
    Success,
    /// The request failed in a way that signals overload (5xx, timeout, `UNAVAILABLE`):
    /// an adaptive limit backs off.
    Dropped,
    /// The outcome says nothing about capacity; release the permit without a sample.
    Ignore,
}

/// Maps a response to an [`Outcome`].
///
/// The head is classified when the inner service answers; a classifier may change its mind
/// when the body ends with trailers (gRPC puts its status there).
///
/// Closures `Fn(StatusCode, &HeaderMap) -> Outcome` are classifiers too:
///
/// ```
/// use http::StatusCode;
/// use surgepool_tower::{AdmissionLayer, Outcome};
///
/// // Count 429s from the handler as overload too.
/// let layer = AdmissionLayer::builder()
///     .classifier(|status: StatusCode, _: &http::HeaderMap| {
///         if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
///             Outcome::Dropped
///         } else {
///             Outcome::Success
///         }
///     })
///     .build()
///     .unwrap();
/// # drop(layer);
/// ```
pub trait Classify: Send + Sync + 'static {
    /// Classifies the response head.
    fn classify_head(&self, status: StatusCode, headers: &HeaderMap) -> Outcome;

    /// Classifies the trailers, if the body ends with some; `None` keeps the head's outcome.
    fn classify_trailers(&self, trailers: &HeaderMap) -> Option<Outcome> {
        let _ = trailers;
        None
    }
}

impl<F> Classify for F
where
    F: Fn(StatusCode, &HeaderMap) -> Outcome + Send + Sync + 'static,
{
    fn classify_head(&self, status: StatusCode, headers: &HeaderMap) -> Outcome {
        self(status, headers)
    }
}

/// The default: a 5xx is a drop, anything else a success.
///
/// 4xx answers count as successes on purpose: the server did the work of answering, so their
/// latency is a fair sample of its state.
///
/// See the [example on `Admission`](crate::Admission#examples), which runs with it.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpClassifier;

impl Classify for HttpClassifier {
    fn classify_head(&self, status: StatusCode, _headers: &HeaderMap) -> Outcome {
        if status.is_server_error() {
            Outcome::Dropped
        } else {
            Outcome::Success
        }
    }
}

/// For gRPC (tonic): an HTTP 5xx, or a `grpc-status` of `DEADLINE_EXCEEDED` (4),
/// `RESOURCE_EXHAUSTED` (8) or `UNAVAILABLE` (14) in the headers (a trailers-only response)
/// or in the trailers, is a drop; anything else a success.
///
/// ```
/// use http::{HeaderMap, HeaderValue, StatusCode};
/// use surgepool_tower::{Classify, GrpcClassifier, Outcome};
///
/// let mut trailers = HeaderMap::new();
/// trailers.insert("grpc-status", HeaderValue::from_static("14"));
/// assert_eq!(GrpcClassifier.classify_head(StatusCode::OK, &HeaderMap::new()), Outcome::Success);
/// assert_eq!(GrpcClassifier.classify_trailers(&trailers), Some(Outcome::Dropped));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcClassifier;

impl GrpcClassifier {
    fn grpc_status(headers: &HeaderMap) -> Option<Outcome> {
        let code = headers
            .get("grpc-status")?
            .to_str()
            .ok()?
            .trim()
            .parse::<u32>()
            .ok()?;
        Some(match code {
            4 | 8 | 14 => Outcome::Dropped,
            _ => Outcome::Success,
        })
    }
}

impl Classify for GrpcClassifier {
    fn classify_head(&self, status: StatusCode, headers: &HeaderMap) -> Outcome {
        if status.is_server_error() {
            return Outcome::Dropped;
        }
        GrpcClassifier::grpc_status(headers).unwrap_or(Outcome::Success)
    }

    fn classify_trailers(&self, trailers: &HeaderMap) -> Option<Outcome> {
        GrpcClassifier::grpc_status(trailers)
    }
}

/// A boxed classifier, shared by every clone of a layer.
pub(crate) struct SharedClassifier(pub(crate) Box<dyn Classify>);

impl fmt::Debug for SharedClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Classify")
    }
}
