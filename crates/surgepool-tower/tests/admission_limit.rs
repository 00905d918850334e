//! Admission under the limit, shedding beyond it, and release of the permit on every path.

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::StatusCode;
use support::{fixed, get, mocked, ok, status, Frames};
use surgepool_tower::{AdmissionLayer, Reason};
use tokio_test::task::spawn;
use tokio_test::{assert_pending, assert_ready, assert_ready_err, assert_ready_ok};
use tower::{Layer, Service};

#[test]
fn admits_up_to_the_limit_and_sheds_beyond_with_503_and_retry_after() {
    let layer = fixed(2);
    let (mut svc, mut handle) = mocked(&layer);

    let mut a = spawn(svc.call(get()));
    let mut b = spawn(svc.call(get()));
    let mut c = spawn(svc.call(get()));
    assert_pending!(a.poll());
    assert_pending!(b.poll());

    // The third is answered at once, without reaching the inner service.
    let shed = assert_ready_ok!(c.poll());
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_eq!(shed.extensions().get::<Reason>(), Some(&Reason::Overloaded));
    assert!(shed.body().is_overload());

    // Exactly two requests reached the inner service.
    assert!(assert_ready!(handle.poll_request()).is_some());
    assert!(assert_ready!(handle.poll_request()).is_some());
    assert_pending!(handle.poll_request());

    let stats = layer.stats();
    assert_eq!((stats.admitted, stats.overloaded), (2, 1));
    assert_eq!(stats.limiter.in_flight, 2);
}

#[test]
fn releases_on_completion_as_a_success() {
    let layer = fixed(1);
    let (mut svc, mut handle) = mocked(&layer);

    let mut a = spawn(svc.call(get()));
    assert_pending!(a.poll());
    let (_req, send) = assert_ready!(handle.poll_request()).unwrap();
    send.send_response(ok(Frames::empty()));
    let response = assert_ready_ok!(a.poll());
    assert_eq!(response.status(), StatusCode::OK);
    // An empty body is over at once: the permit is back already.
    assert_eq!(layer.limiter().in_flight(), 0);
    assert_eq!(layer.stats().limiter.succeeded, 1);

    // And the next request is admitted.
    let mut b = spawn(svc.call(get()));
    assert_pending!(b.poll());
    assert!(assert_ready!(handle.poll_request()).is_some());
}

#[test]
fn a_5xx_answer_counts_as_a_drop_and_a_4xx_as_a_success() {
    let layer = fixed(2);
    let (mut svc, mut handle) = mocked(&layer);

    let mut a = spawn(svc.call(get()));
    let mut b = spawn(svc.call(get()));
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    let (_, send_a) = assert_ready!(handle.poll_request()).unwrap();
    let (_, send_b) = assert_ready!(handle.poll_request()).unwrap();
    send_a.send_response(status(500));
    send_b.send_response(status(404));
    // The handler's own 500 passes through unchanged; it is not an overload response.
    let a = assert_ready_ok!(a.poll());
    assert_eq!(a.status(), 500);
    assert!(!a.body().is_overload());
    assert_eq!(assert_ready_ok!(b.poll()).status(), 404);

    let stats = layer.stats().limiter;
    assert_eq!((stats.in_flight, stats.dropped, stats.succeeded), (0, 1, 1));
}

#[test]
fn releases_on_an_inner_error_as_a_drop() {
    let layer = fixed(1);
    let (mut svc, mut handle) = mocked(&layer);

    let mut a = spawn(svc.call(get()));
    assert_pending!(a.poll());
    let (_req, send) = assert_ready!(handle.poll_request()).unwrap();
    send.send_error("backend down");
    assert_ready_err!(a.poll());
    let stats = layer.stats().limiter;
    assert_eq!((stats.in_flight, stats.dropped), (0, 1));
}

#[test]
fn releases_when_the_response_future_is_dropped() {
    let layer = fixed(1);
    let (mut svc, mut handle) = mocked(&layer);

    // Dropped while calling the inner service.
    let mut a = spawn(svc.call(get()));
    assert_pending!(a.poll());
    let _request = assert_ready!(handle.poll_request()).unwrap();
    assert_eq!(layer.limiter().in_flight(), 1);
    drop(a);
    assert_eq!(layer.limiter().in_flight(), 0);

    // Dropped before it was ever polled (admitted in `call`).
    let b = svc.call(get());
    assert_eq!(layer.limiter().in_flight(), 1);
    drop(b);

    let stats = layer.stats().limiter;
    assert_eq!((stats.in_flight, stats.dropped), (0, 2));
}

#[test]
fn releases_as_a_drop_during_the_unwind_when_the_inner_future_panics() {
    let layer = fixed(1);
    let mut svc = layer.layer(tower::service_fn(|_req: http::Request<()>| async {
        if true {
            panic!("handler bug");
        }
        Ok::<_, std::convert::Infallible>(support::ok(Frames::empty()))
    }));

    let mut fut = spawn(svc.call(get()));
    let panicked = catch_unwind(AssertUnwindSafe(|| fut.poll()));
    assert!(panicked.is_err());
    // The future still exists, yet its permit is already back, counted as a drop.
    let stats = layer.stats().limiter;
    assert_eq!((stats.in_flight, stats.dropped), (0, 1));
    drop(fut);
    assert_eq!(layer.stats().limiter.dropped, 1, "released exactly once");
}

/// An inner service whose `poll_ready` panics.
#[derive(Clone)]
struct PanicsWhenPolledReady;

impl Service<http::Request<()>> for PanicsWhenPolledReady {
    type Response = http::Response<Frames>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        panic!("poll_ready bug")
    }

    fn call(&mut self, _req: http::Request<()>) -> Self::Future {
        unreachable!()
    }
}

/// An admitted request's `call` asks the inner service whether it is ready (to call it in
/// place): a panic there unwinds out of `call`, and the permit it took is back, as a drop.
#[test]
fn releases_as_a_drop_when_the_inner_poll_ready_panics() {
    let layer = fixed(1);
    let mut svc = layer.layer(PanicsWhenPolledReady);
    assert!(catch_unwind(AssertUnwindSafe(|| svc.call(get()))).is_err());
    let stats = layer.stats().limiter;
    assert_eq!((stats.in_flight, stats.dropped), (0, 1));
}

/// The same for a panic in the inner service's `call`.
#[test]
fn releases_as_a_drop_when_the_inner_call_panics() {
    let layer = fixed(1);
    let mut svc = layer.layer(tower::service_fn(|_req: http::Request<()>| {
        if true {
            panic!("call bug");
        }
        std::future::ready(Ok::<_, std::convert::Infallible>(support::ok(
            Frames::empty(),
        )))
    }));
    assert!(catch_unwind(AssertUnwindSafe(|| svc.call(get()))).is_err());
    let stats = layer.stats().limiter;
    assert_eq!((stats.in_flight, stats.dropped), (0, 1));
}

/// An inner service that counts its clones.
struct CountsClones(Arc<AtomicUsize>);

impl Clone for CountsClones {
    fn clone(&self) -> Self {
        self.0.fetch_add(1, Ordering::Relaxed);
        CountsClones(self.0.clone())
    }
}

impl Service<http::Request<()>> for CountsClones {
    type Response = http::Response<Frames>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: http::Request<()>) -> Self::Future {
        std::future::ready(Ok(support::ok(Frames::empty())))
    }
}

/// A request admitted to an inner service that is ready at once is passed to it in place:
/// no clone of the inner service per request (for axum's router, a reference count that
/// every connection shares).
#[tokio::test]
async fn a_ready_inner_service_is_called_in_place() {
    let clones = Arc::new(AtomicUsize::new(0));
    let layer = fixed(4);
    let mut svc = layer.layer(CountsClones(clones.clone()));
    for _ in 0..10 {
        let response = svc.call(get()).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(clones.load(Ordering::Relaxed), 0);
    assert_eq!(layer.stats().limiter.succeeded, 10);
}

#[test]
fn clones_and_sibling_services_share_one_limit() {
    let layer = fixed(2);
    let (svc, mut handle) = mocked(&layer);
    let mut clone_a = svc.clone();
    let mut clone_b = svc.clone();
    // A second service from the same layer (e.g. another axum route).
    let (mut sibling, mut sibling_handle) = mocked(&layer);

    let mut a = spawn(clone_a.call(get()));
    let mut b = spawn(sibling.call(get()));
    let mut c = spawn(clone_b.call(get()));
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    assert_eq!(
        assert_ready_ok!(c.poll()).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(assert_ready!(handle.poll_request()).is_some());
    assert!(assert_ready!(sibling_handle.poll_request()).is_some());
    assert_eq!(layer.limiter().in_flight(), 2);
}

#[test]
fn poll_ready_is_always_ready_and_inner_readiness_is_awaited_after_admission() {
    let layer = fixed(1);
    let (mut svc, mut handle) = mocked(&layer);
    // The inner service is not ready (e.g. a cooperative yield or its own backpressure).
    handle.allow(0);

    let mut ready = spawn(std::future::poll_fn(|cx| svc.poll_ready(cx)));
    assert_ready_ok!(ready.poll());
    drop(ready);

    let mut a = spawn(svc.call(get()));
    assert_pending!(a.poll());
    // Admitted (holds the permit) but still waiting for the inner service.
    assert_eq!(layer.limiter().in_flight(), 1);
    assert_pending!(handle.poll_request());

    handle.allow(1);
    assert!(a.is_woken());
    assert_pending!(a.poll());
    let (_req, send) = assert_ready!(handle.poll_request()).unwrap();
    send.send_response(ok(Frames::empty()));
    assert_eq!(assert_ready_ok!(a.poll()).status(), StatusCode::OK);
    assert_eq!(layer.limiter().in_flight(), 0);
}

#[test]
fn custom_overload_status_and_retry_after() {
    let layer = AdmissionLayer::builder()
        .limit(surgepool::Limit::fixed(1))
        .overload_response(surgepool_tower::OverloadResponse::http(
            StatusCode::TOO_MANY_REQUESTS,
            Some(std::time::Duration::from_millis(2500)),
        ))
        .build()
        .unwrap();
    let (mut svc, _handle) = mocked(&layer);
    let _held = svc.call(get());
    let mut shed = spawn(svc.call(get()));
    let response = assert_ready_ok!(shed.poll());
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "3");
}

#[test]
fn grpc_preset_sheds_with_unavailable() {
    let layer = AdmissionLayer::builder()
        .limit(surgepool::Limit::fixed(1))
        .grpc()
        .build()
        .unwrap();
    let (mut svc, _handle) = mocked(&layer);
    let _held = svc.call(get());
    let mut shed = spawn(svc.call(get()));
    let response = assert_ready_ok!(shed.poll());
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "14");
    assert_eq!(response.headers()["content-type"], "application/grpc");
}

#[test]
fn a_panicking_classifier_releases_the_permit_as_a_drop() {
    let layer = AdmissionLayer::builder()
        .limit(surgepool::Limit::fixed(1))
        .classifier(
            |_: StatusCode, _: &http::HeaderMap| -> surgepool_tower::Outcome {
                panic!("classifier bug")
            },
        )
        .build()
        .unwrap();
    let (mut svc, mut handle) = mocked(&layer);
    let mut a = spawn(svc.call(get()));
    assert_pending!(a.poll());
    let (_req, send) = assert_ready!(handle.poll_request()).unwrap();
    send.send_response(ok(Frames::empty()));
    assert!(catch_unwind(AssertUnwindSafe(|| a.poll())).is_err());
    let stats = layer.stats().limiter;
    assert_eq!((stats.in_flight, stats.dropped), (0, 1));
    drop(a);
    assert_eq!(layer.stats().limiter.dropped, 1, "released exactly once");
}
