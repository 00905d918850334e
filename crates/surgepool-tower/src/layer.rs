//! The layer, and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use surgepool::limit::{Limit, Limiter};
use tower_layer::Layer;

use crate::classify::{Classify, HttpClassifier, SharedClassifier};
use crate::error::BuildError;
use crate::response::OverloadResponse;
use crate::service::Admission;
use crate::shared::{AdmissionStats, Shared};

/// Wraps services in [`Admission`]: requests beyond the limit get an overload response at
/// once (or wait in a bounded queue, up to a deadline).
///
/// **One `AdmissionLayer` value is one limit.** Every service it makes, and every clone of
/// those, shares it: applied with axum's `Router::layer`, all routes share one limit (build
/// two layers for two limits). Clone the layer to apply the same limit in several places.
///
/// An adaptive limit learns one latency for everything behind its layer. Endpoints whose
/// service times differ by orders of magnitude (a 0.1 ms `/health` beside a 20 ms `/work`) can
/// mislead it: a burst of fast requests makes the slow ones look queued, and the limit drops.
/// Give such groups their own layer (`route_layer` per group), or keep cheap endpoints
/// outside it (routes added after `Router::layer` are not wrapped).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use surgepool::Limit;
/// use surgepool_tower::AdmissionLayer;
///
/// // Adaptive limit, shed at once when full (the defaults):
/// let layer = AdmissionLayer::new(Limit::adaptive()).unwrap();
///
/// // A fixed limit of 64, up to 128 requests waiting, each answered within 2 s:
/// let layer = AdmissionLayer::builder()
///     .limit(Limit::fixed(64))
///     .queue_capacity(128)
///     .deadline(Duration::from_secs(2))
///     .build()
///     .unwrap();
/// assert_eq!(layer.limiter().limit(), 64);
/// ```
#[derive(Clone)]
pub struct AdmissionLayer {
    shared: Arc<Shared>,
    name: Arc<str>,
}

impl AdmissionLayer {
    /// A layer with `limit`, no queue, no deadline, the [`HttpClassifier`] and the default
    /// overload response (`503` with `Retry-After: 1`).
    ///
    /// # Errors
    ///
    /// A [`BuildError`] when the limit's settings cannot work (e.g. `Limit::fixed(0)`).
    ///
    /// See the [example on `AdmissionLayer`](AdmissionLayer#examples).
    pub fn new(limit: Limit) -> Result<AdmissionLayer, BuildError> {
        AdmissionLayer::builder().limit(limit).build()
    }

    /// A builder with every setting.
    ///
    /// See the [example on `AdmissionLayer`](AdmissionLayer#examples).
    pub fn builder() -> AdmissionLayerBuilder {
        AdmissionLayerBuilder::default()
    }

    /// The limiter this layer admits with.
    ///
    /// See the [example on `AdmissionLayer`](AdmissionLayer#examples).
    pub fn limiter(&self) -> &Limiter {
        &self.shared.limiter
    }

    /// The counters of every service this layer made.
    ///
    /// See the [example on `Admission`](crate::Admission#examples).
    pub fn stats(&self) -> AdmissionStats {
        self.shared.stats()
    }

    /// The layer's name, set with [`AdmissionLayerBuilder::name`] (default `"http"`): the
    /// `pool` label of its metrics.
    ///
    /// ```
    /// use surgepool_tower::AdmissionLayer;
    /// let layer = AdmissionLayer::builder().name("api").build().unwrap();
    /// assert_eq!(layer.name(), "api");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Admission<S> {
        Admission::new(inner, self.shared.clone())
    }
}

impl fmt::Debug for AdmissionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionLayer")
            .field("name", &self.name)
            .field("limiter", &self.shared.limiter)
            .field("queue_capacity", &self.shared.queue_capacity)
            .field("deadline", &self.shared.deadline)
            .field("body_timeout", &self.shared.bodies.timeout())
            .finish_non_exhaustive()
    }
}

/// Settings of an [`AdmissionLayer`]; see [`AdmissionLayer::builder`].
#[derive(Default)]
pub struct AdmissionLayerBuilder {
    limit: Option<Limit>,
    limiter: Option<Limiter>,
    queue_capacity: usize,
    deadline: Option<Duration>,
    body_timeout: Option<Duration>,
    overload: Option<OverloadResponse>,
    classifier: Option<Box<dyn Classify>>,
    name: Option<Arc<str>>,
}

/// The name of a layer built without [`AdmissionLayerBuilder::name`].
const DEFAULT_NAME: &str = "http";

impl AdmissionLayerBuilder {
    /// The default [`body_timeout`](Self::body_timeout): 10 seconds.
    ///
    /// Long enough for any body a request-response service sends to a client that reads it;
    /// short enough that clients that stop reading cannot keep a server at its limit (and
    /// its adaptive limit without samples) for longer than a blip.
    ///
    /// ```
    /// use std::time::Duration;
    /// use surgepool_tower::AdmissionLayerBuilder;
    ///
    /// assert_eq!(AdmissionLayerBuilder::DEFAULT_BODY_TIMEOUT, Duration::from_secs(10));
    /// ```
    pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

    /// A name for this layer: the `pool` label of its metrics (feature `metrics`).
    /// Default: `"http"`.
    ///
    /// See the [example on `AdmissionLayer::name`](AdmissionLayer::name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(Arc::from(name.into()));
        self
    }

    /// The concurrency limit (default: [`Limit::adaptive()`]).
    ///
    /// See the [example on `AdmissionLayer`](AdmissionLayer#examples).
    pub fn limit(mut self, limit: Limit) -> Self {
        self.limit = Some(limit);
        self.limiter = None;
        self
    }

    /// Admit with an existing limiter, e.g. one shared with a [`surgepool::Pool`]'s callers
    /// or with another layer. Replaces [`limit`](Self::limit).
    ///
    /// See the [example on `AdmissionLayer`](AdmissionLayer#examples).
    pub fn limiter(mut self, limiter: Limiter) -> Self {
        self.limiter = Some(limiter);
        self.limit = None;
        self
    }

    /// How many requests may wait for a permit when the limit is reached (default 0: shed
    /// at once). A queue needs a [`deadline`](Self::deadline), so no request waits forever.
    ///
    /// See the [example on `AdmissionLayer`](AdmissionLayer#examples).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// The longest a request may take from `call` to the response **head**, queue wait
    /// included (unlike `tower::timeout`, which starts after `poll_ready`). A request past
    /// its deadline gets the overload response (reason [`Reason::Timeout`](crate::Reason)
    /// or [`Reason::QueueTimeout`](crate::Reason)), its inner future is dropped, and it
    /// counts as a drop. Default: none.
    ///
    /// The deadline does **not** cover the body: once the head is answered, the body's hold
    /// on the permit is bounded by [`body_timeout`](Self::body_timeout) instead (a response
    /// cannot be turned into a 503 once its head is sent). Any `Duration` is accepted;
    /// one too long for the clock (`Duration::MAX`) means about 30 years, as in
    /// `tokio::time::sleep`.
    ///
    /// A deadline needs a tokio runtime with the time driver enabled.
    ///
    /// See the [example on `AdmissionLayer`](AdmissionLayer#examples).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The longest a response body may hold its request's permit once the head is answered
    /// (default [`DEFAULT_BODY_TIMEOUT`](Self::DEFAULT_BODY_TIMEOUT), 10 s).
    ///
    /// An admitted request keeps its permit until its body ends (see
    /// [`AdmissionBody`](crate::AdmissionBody)), so a few clients that never read a streaming
    /// body could otherwise hold every permit: everyone else gets 503 and an adaptive limit
    /// gets no sample to move on. When the time runs out the permit is released as a
    /// **drop** and counted in [`body_timeouts`](crate::AdmissionStats::body_timeouts); the
    /// body itself is not cut, it just stops counting against the limit (a server's write
    /// or idle timeout is what closes the connection of a client that stopped reading).
    ///
    /// Set it above your longest legitimate body (downloads, server-sent events), or
    /// `Duration::MAX` for no bound. The bound is kept by a small task per layer on the
    /// tokio runtime that serves the body (it needs the time driver); outside a runtime,
    /// bodies hold their permits until they end.
    ///
    /// ```
    /// use std::time::Duration;
    /// use surgepool::Limit;
    /// use surgepool_tower::AdmissionLayer;
    ///
    /// let layer = AdmissionLayer::builder()
    ///     .limit(Limit::adaptive())
    ///     .body_timeout(Duration::from_secs(60)) // large downloads
    ///     .build()
    ///     .unwrap();
    /// # drop(layer);
    /// ```
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = Some(timeout);
        self
    }

    /// The response for shed requests (default: `503` with `Retry-After: 1`).
    ///
    /// See the [example on `OverloadResponse`](crate::OverloadResponse#examples).
    pub fn overload_response(mut self, response: OverloadResponse) -> Self {
        self.overload = Some(response);
        self
    }

    /// How responses map to successes and drops (default: [`HttpClassifier`], 5xx = drop).
    ///
    /// See the [example on `Classify`](crate::Classify).
    pub fn classifier(mut self, classifier: impl Classify) -> Self {
        self.classifier = Some(Box::new(classifier));
        self
    }

    /// For tonic: shed with gRPC `UNAVAILABLE` and classify with
    /// [`GrpcClassifier`](crate::GrpcClassifier).
    ///
    /// See the tonic example in the [crate documentation](crate#tonic).
    pub fn grpc(self) -> Self {
        self.overload_response(OverloadResponse::grpc_unavailable())
            .classifier(crate::classify::GrpcClassifier)
    }

    /// Checks the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] when the limit cannot work, the deadline or the body timeout is
    /// zero, a queue has no deadline, or the overload response's `Retry-After` is longer than
    /// [`OverloadResponse::MAX_RETRY_AFTER`].
    ///
    /// See the [example on `AdmissionLayer`](AdmissionLayer#examples).
    pub fn build(self) -> Result<AdmissionLayer, BuildError> {
        if self.deadline == Some(Duration::ZERO) {
            return Err(BuildError::new(
                "deadline",
                "a zero deadline would time out every request",
            ));
        }
        let body_timeout = self.body_timeout.unwrap_or(Self::DEFAULT_BODY_TIMEOUT);
        if body_timeout == Duration::ZERO {
            return Err(BuildError::new(
                "body_timeout",
                "a zero body timeout would release every streaming body's permit at once, \
                 as a drop (use Duration::MAX for no bound)",
            ));
        }
        if let Some(retry_after) = self.overload.as_ref().and_then(|o| o.retry_after()) {
            if retry_after > OverloadResponse::MAX_RETRY_AFTER {
                return Err(BuildError::new(
                    "overload_response",
                    format!(
                        "a Retry-After of {retry_after:?} is longer than the {} s clients can \
                         read (RFC 9111 §1.2.2); it would be sent as {} s",
                        OverloadResponse::MAX_RETRY_AFTER.as_secs(),
                        OverloadResponse::MAX_RETRY_AFTER.as_secs(),
                    ),
                ));
            }
        }
        if self.queue_capacity > 0 && self.deadline.is_none() {
            return Err(BuildError::new(
                "queue_capacity",
                "a queue needs a deadline (`.deadline(..)`), or a queued request could wait forever",
            ));
        }
        let limiter = match self.limiter {
            Some(limiter) => limiter,
            None => Limiter::new(self.limit.unwrap_or_default())?,
        };
        let shared = Shared::new(
            limiter,
            self.queue_capacity,
            self.deadline,
            self.overload.unwrap_or_default(),
            SharedClassifier(self.classifier.unwrap_or_else(|| Box::new(HttpClassifier))),
            body_timeout,
        );
        Ok(AdmissionLayer {
            shared: Arc::new(shared),
            name: self.name.unwrap_or_else(|| Arc::from(DEFAULT_NAME)),
        })
    }
}

impl fmt::Debug for AdmissionLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionLayerBuilder")
            .field("name", &self.name)
            .field("limit", &self.limit)
            .field("limiter", &self.limiter)
            .field("queue_capacity", &self.queue_capacity)
            .field("deadline", &self.deadline)
            .field("body_timeout", &self.body_timeout)
            .finish_non_exhaustive()
    }
}
