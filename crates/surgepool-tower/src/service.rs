//! The service: admits a request under the shared limit, queues it, or sheds it.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::body::AdmissionBody;
use crate::future::ResponseFuture;
use crate::response::Reason;
use crate::shared::{AdmissionStats, Shared};

/// Admission control in front of an HTTP service; made by [`AdmissionLayer`](crate::AdmissionLayer).
///
/// Clones share the layer's state (limit, queue, counters) through an `Arc`, so the
/// per-request clones that axum and hyper make all count against **one** limit.
///
/// # Readiness
///
/// `poll_ready` is always `Ready`: the admission decision is taken in `call`, never in
/// `poll_ready`, so a cooperative-yield `Pending` of the inner service cannot be mistaken for
/// overload. The inner service must be `Clone` (axum's routers, `service_fn` and tonic's
/// generated servers are). An admitted request is passed to the inner service at once when
/// that service is ready at once (axum's routers always are); otherwise it takes a clone and
/// the response future drives **that clone's** `poll_ready`, inside the deadline. So an inner
/// service that applies backpressure is waited for honestly, while the request holds its
/// permit: that wait is part of the latency the limit sees.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response, StatusCode};
/// use surgepool::Limit;
/// use surgepool_tower::{AdmissionLayer, Reason};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hello = service_fn(|_req: Request<String>| async {
///     Ok::<_, Infallible>(Response::new(String::from("hello")))
/// });
/// let service = AdmissionLayer::new(Limit::fixed(1))?.layer(hello);
///
/// // While the only permit is held (here by hand, through the shared limiter) ...
/// let held = service.limiter().try_acquire().expect("free");
/// let shed = service.clone().oneshot(Request::new(String::new())).await?;
/// assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE); // at once, with Retry-After
/// assert_eq!(shed.extensions().get::<Reason>(), Some(&Reason::Overloaded));
/// assert!(shed.body().is_overload());
/// held.success();
///
/// // ... and once it is back, requests reach the inner service.
/// let ok = service.clone().oneshot(Request::new(String::new())).await?;
/// assert_eq!(ok.status(), StatusCode::OK);
/// assert!(!ok.body().is_overload());
/// drop(ok); // the body held the permit until now
///
/// let stats = service.stats();
/// assert_eq!((stats.requests, stats.admitted, stats.overloaded), (2, 1, 1));
/// assert_eq!(service.get_ref().clone().oneshot(Request::new(String::new())).await?.status(), 200);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Admission<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Admission<S> {
        Admission { inner, shared }
    }

    /// The inner service.
    ///
    /// See the [example on `Admission`](Admission#examples).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The limiter every clone of this service shares.
    ///
    /// See the [example on `Admission`](Admission#examples).
    pub fn limiter(&self) -> &surgepool::limit::Limiter {
        &self.shared.limiter
    }

    /// The counters every clone of this service shares.
    ///
    /// See the [example on `Admission`](Admission#examples).
    pub fn stats(&self) -> AdmissionStats {
        self.shared.stats()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Admission<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Body,
{
    type Response = Response<AdmissionBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<ReqBody>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Always ready: see "Readiness" above.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = self.shared.clone();
        shared.count_request();
        if let Some(permit) = shared.limiter.try_acquire() {
            shared.count_admitted();
            // Ready at once: called in place. A clone per request would be a reference count
            // that every connection's copy of the stack shares (axum's router), moved between
            // the cores on every request.
            let mut cx = Context::from_waker(noop_waker());
            if let Poll::Ready(Ok(())) = self.inner.poll_ready(&mut cx) {
                // A panic in `call` drops the permit, which counts as dropped.
                let future = self.inner.call(request);
                return ResponseFuture::calling(future, permit, shared);
            }
            // Not ready (or failing): the request's own clone is driven to readiness (or to
            // its error) with a real waker.
            return ResponseFuture::admitted(self.inner.clone(), request, permit, shared);
        }
        if let Some(slot) = shared.try_enqueue() {
            return ResponseFuture::queued(self.inner.clone(), request, slot, shared);
        }
        shared.count_shed(Reason::Overloaded);
        ResponseFuture::shed(Reason::Overloaded, shared)
    }
}

/// A waker that does nothing, for asking the inner service whether it is ready at once
/// (`Waker::noop` needs Rust 1.85; the crate supports 1.80).
fn noop_waker() -> &'static std::task::Waker {
    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    // The `Arc` is kept beside its waker: the waker of a zero-sized type points one past the
    // end of its allocation, which LeakSanitizer does not count as a reference (the fuzz
    // target reported the 16 bytes as leaked).
    static NOOP: std::sync::OnceLock<(Arc<Noop>, std::task::Waker)> = std::sync::OnceLock::new();
    &NOOP
        .get_or_init(|| {
            let noop = Arc::new(Noop);
            (noop.clone(), noop.into())
        })
        .1
}

impl<S: fmt::Debug> fmt::Debug for Admission<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("inner", &self.inner)
            .field("limiter", &self.shared.limiter)
            .finish_non_exhaustive()
    }
}
