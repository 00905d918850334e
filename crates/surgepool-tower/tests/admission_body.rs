//! A streaming body holds its request's permit until it ends.

mod support;

use std::pin::Pin;
use std::task::Poll;

use http::{HeaderMap, HeaderValue};
use http_body::Body;
use std::time::Duration;

use support::{assert_identity, fixed, get, mocked, ok, run_tasks_until, Frames};
use surgepool_tower::AdmissionLayer;
use tokio_test::task::spawn;
use tokio_test::{assert_pending, assert_ready, assert_ready_ok};
use tower::Service;

type FramePoll<B> = Poll<Option<Result<http_body::Frame<<B as Body>::Data>, <B as Body>::Error>>>;

fn poll_frame<B: Body + Unpin>(body: &mut B) -> FramePoll<B> {
    let mut task = spawn(std::future::poll_fn(|cx| {
        Pin::new(&mut *body).poll_frame(cx)
    }));
    task.poll()
}

#[test]
fn the_body_holds_the_permit_until_it_ends() {
    let layer = fixed(1);
    let (mut svc, mut handle) = mocked(&layer);

    let mut a = spawn(svc.call(get()));
    assert_pending!(a.poll());
    let (_req, send) = assert_ready!(handle.poll_request()).unwrap();
    send.send_response(ok(Frames::data(&["one", "two"])));
    let mut body = assert_ready_ok!(a.poll()).into_body();

    // Head sent, body still streaming: still in flight, and the next request is shed.
    assert_eq!(layer.limiter().in_flight(), 1);
    let mut b = spawn(svc.call(get()));
    assert_eq!(assert_ready_ok!(b.poll()).status(), 503);

    assert!(assert_ready!(poll_frame(&mut body)).is_some());
    assert_eq!(layer.limiter().in_flight(), 1);
    // The last frame: the body now says it is over, and that is its end (hyper drops a body
    // in that state without polling it again).
    assert!(assert_ready!(poll_frame(&mut body)).is_some());
    assert!(body.is_end_stream());
    let stats = layer.stats().limiter;
    assert_eq!((stats.in_flight, stats.succeeded), (0, 1));
    assert!(assert_ready!(poll_frame(&mut body)).is_none());
    drop(body);
    assert_eq!(layer.stats().limiter.succeeded, 1, "released exactly once");
}

#[test]
fn a_body_without_a_known_end_is_released_when_it_returns_none() {
    let layer = fixed(1);
    let (mut svc, mut handle) = mocked(&layer);
    let mut a = spawn(svc.call(get()));
    assert_pending!(a.poll());
    let (_req, send) = assert_ready!(handle.poll_request()).unwrap();
    // A stream that cannot tell it is over until polled once more.
    let mut frames = Frames::data(&["only"]);
    frames.1 = false;
    send.send_response(ok(frames));
    let mut body = assert_ready_ok!(a.poll()).into_body();
    assert!(assert_ready!(poll_frame(&mut body)).is_some());
    assert_eq!(layer.limiter().in_flight(), 1);
    assert!(assert_ready!(poll_frame(&mut body)).is_none());
    let stats = layer.stats().limiter;
    assert_eq!((stats.in_flight, stats.succeeded), (0, 1));
}

#[test]
fn a_pending_body_keeps_its_permit() {
    let layer = fixed(1);
    let (mut svc, mut handle) = mocked(&layer);
    let mut a = spawn(svc.call(get()));
    assert_pending!(a.poll());
    let (_req, send) = assert_ready!(handle.poll_request()).unwrap();
    let mut frames = Frames::data(&["first"]);
    frames.0.push_back(None); // then stalls
    send.send_response(ok(frames));
    let mut body = assert_ready_ok!(a.poll()).into_body();
    assert!(assert_ready!(poll_frame(&mut body)).is_some());
    assert_pending!(poll_frame(&mut body));
    assert_eq!(layer.limiter().in_flight(), 1);
}

#[test]
fn trailers_can_turn_a_success_into_a_drop() {
    let layer = AdmissionLayer::builder()
        .limit(surgepool::Limit::fixed(1))
        .grpc()
        .build()
        .unwrap();
    let (mut svc, mut handle) = mocked(&layer);
    let mut a = spawn(svc.call(get()));
    assert_pending!(a.poll());
    let (_req, send) = assert_ready!(handle.poll_request()).unwrap();
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("14"));
    send.send_response(ok(Frames::data(&["msg"]).with_trailers(trailers)));
    let mut body = assert_ready_ok!(a.poll()).into_body();
    assert!(assert_ready!(poll_frame(&mut body)).is_some()); // data
    assert!(assert_ready!(poll_frame(&mut body)).is_some()); // trailers
    let stats = layer.stats().limiter;
    assert_eq!((stats.in_flight, stats.dropped, stats.succeeded), (0, 1, 0));
}

#[test]
fn a_body_dropped_before_its_end_releases_without_a_sample() {
    let layer = fixed(1);
    let (mut svc, mut handle) = mocked(&layer);
    let mut a = spawn(svc.call(get()));
    assert_pending!(a.poll());
    let (_req, send) = assert_ready!(handle.poll_request()).unwrap();
    send.send_response(ok(Frames::data(&["never read"])));
    let body = assert_ready_ok!(a.poll()).into_body();
    assert_eq!(layer.limiter().in_flight(), 1);
    drop(body);
    let stats = layer.stats().limiter;
    assert_eq!((stats.in_flight, stats.ignored, stats.dropped), (0, 1, 0));
}

#[test]
fn the_overload_body_carries_its_bytes() {
    let layer = AdmissionLayer::builder()
        .limit(surgepool::Limit::fixed(1))
        .overload_response(surgepool_tower::OverloadResponse::custom(|_| {
            http::Response::builder()
                .status(503)
                .body(bytes::Bytes::from_static(b"busy"))
                .unwrap()
        }))
        .build()
        .unwrap();
    let (mut svc, _handle) = mocked(&layer);
    let _held = svc.call(get());
    let mut b = spawn(svc.call(get()));
    let mut body = assert_ready_ok!(b.poll()).into_body();
    assert_eq!(body.size_hint().exact(), Some(4));
    let frame = assert_ready!(poll_frame(&mut body)).unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "busy");
    assert!(body.is_end_stream());
    assert!(assert_ready!(poll_frame(&mut body)).is_none());
}

/// A response body that sends its first frame, then stalls (as hyper does with a body it
/// cannot write because the client does not read).
fn stalled() -> Frames {
    let mut frames = Frames::data(&["first"]);
    frames.0.push_back(None);
    frames
}

#[tokio::test(start_paused = true)]
async fn two_clients_that_never_read_no_longer_wedge_the_server() {
    let layer = fixed(2);
    let (mut svc, mut handle) = mocked(&layer);

    // Two clients whose bodies are never read hold both permits...
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let mut call = spawn(svc.call(get()));
        assert_pending!(call.poll());
        let (_req, send) = handle.next_request().await.unwrap();
        send.send_response(ok(stalled()));
        bodies.push(assert_ready_ok!(call.poll()).into_body());
    }
    // ...so everyone else is shed, for now.
    let mut shed = spawn(svc.call(get()));
    assert_eq!(assert_ready_ok!(shed.poll()).status(), 503);
    tokio::time::advance(Duration::from_millis(9_999)).await;
    tokio::task::yield_now().await;
    assert_eq!(layer.limiter().in_flight(), 2);

    // At the body timeout the permits come back, as drops, though nobody polls the bodies.
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(run_tasks_until(100, || layer.limiter().in_flight() == 0).await);
    let stats = layer.stats();
    assert_eq!(stats.body_timeouts, 2);
    assert_eq!((stats.limiter.dropped, stats.limiter.succeeded), (2, 0));

    // The server takes requests again.
    let mut next = spawn(svc.call(get()));
    assert_pending!(next.poll());
    let (_req, send) = handle.next_request().await.unwrap();
    send.send_response(ok(Frames::empty()));
    assert_eq!(assert_ready_ok!(next.poll()).status(), 200);

    // The old bodies still stream (the layer does not cut them), and their end or drop
    // releases nothing twice.
    assert!(assert_ready!(poll_frame(&mut bodies[0])).is_some());
    drop(bodies);
    let stats = layer.stats();
    assert_eq!(
        (
            stats.limiter.dropped,
            stats.limiter.succeeded,
            stats.limiter.ignored
        ),
        (2, 1, 0)
    );
    assert_eq!(stats.limiter.in_flight, 0);
    assert_identity(&layer);
}

#[tokio::test(start_paused = true)]
async fn a_body_that_ends_in_time_is_not_reaped() {
    let layer = AdmissionLayer::builder()
        .limit(surgepool::Limit::fixed(1))
        .body_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let (mut svc, mut handle) = mocked(&layer);
    let mut a = spawn(svc.call(get()));
    assert_pending!(a.poll());
    let (_req, send) = handle.next_request().await.unwrap();
    send.send_response(ok(Frames::data(&["one", "two"])));
    let mut body = assert_ready_ok!(a.poll()).into_body();
    tokio::time::advance(Duration::from_millis(999)).await;
    assert!(assert_ready!(poll_frame(&mut body)).is_some());
    assert!(assert_ready!(poll_frame(&mut body)).is_some());
    tokio::time::advance(Duration::from_secs(5)).await;
    tokio::task::yield_now().await;
    let stats = layer.stats();
    assert_eq!((stats.body_timeouts, stats.limiter.succeeded), (0, 1));
    assert_eq!(stats.limiter.dropped, 0);
}

#[test]
fn outside_a_runtime_a_body_keeps_its_permit_until_it_ends() {
    // No runtime to run the reaper on: no panic, and the body holds its permit as before.
    let layer = fixed(1);
    let (mut svc, mut handle) = mocked(&layer);
    let mut a = spawn(svc.call(get()));
    assert_pending!(a.poll());
    let (_req, send) = assert_ready!(handle.poll_request()).unwrap();
    send.send_response(ok(stalled()));
    let body = assert_ready_ok!(a.poll()).into_body();
    assert_eq!(layer.limiter().in_flight(), 1);
    drop(body);
    assert_eq!(layer.stats().limiter.ignored, 1);
}

#[test]
fn a_runtime_without_timers_does_not_panic_and_keeps_the_permit() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let layer = fixed(2);
    runtime.block_on(async {
        let (mut svc, mut handle) = mocked(&layer);
        for _ in 0..2 {
            let mut a = spawn(svc.call(get()));
            assert_pending!(a.poll());
            let (_req, send) = assert_ready!(handle.poll_request()).unwrap();
            send.send_response(ok(stalled()));
            let body = assert_ready_ok!(a.poll()).into_body();
            tokio::task::yield_now().await;
            drop(body);
        }
    });
    let stats = layer.stats().limiter;
    assert_eq!((stats.in_flight, stats.ignored), (0, 2));
}

/// A body that panics when polled.
struct Panics;

impl Body for Panics {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(self: Pin<&mut Self>, _cx: &mut std::task::Context<'_>) -> FramePoll<Self> {
        panic!("body bug")
    }
}

#[test]
fn a_body_that_panics_releases_its_permit_as_a_drop() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use tower::Layer;

    let layer = fixed(1);
    let mut svc = layer.layer(tower::service_fn(|_req: http::Request<()>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Panics))
    }));
    let mut a = spawn(svc.call(get()));
    let mut body = assert_ready_ok!(a.poll()).into_body();
    assert_eq!(layer.limiter().in_flight(), 1);
    assert!(catch_unwind(AssertUnwindSafe(|| poll_frame(&mut body))).is_err());
    // The body still exists (as in a tokio task that caught the panic), yet the permit is
    // back, as a drop, and dropping the body later releases nothing twice.
    let stats = layer.stats().limiter;
    assert_eq!((stats.in_flight, stats.dropped), (0, 1));
    drop(body);
    let stats = layer.stats().limiter;
    assert_eq!((stats.dropped, stats.ignored), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_gets_the_permit_a_stalled_body_gave_back() {
    let layer = AdmissionLayer::builder()
        .limit(surgepool::Limit::fixed(1))
        .queue_capacity(1)
        .deadline(Duration::from_secs(60))
        .body_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (mut svc, mut handle) = mocked(&layer);
    let mut a = spawn(svc.call(get()));
    assert_pending!(a.poll());
    let (_req, send) = handle.next_request().await.unwrap();
    send.send_response(ok(stalled()));
    let _stalled_body = assert_ready_ok!(a.poll()).into_body();

    let mut b = spawn(svc.call(get()));
    assert_pending!(b.poll());
    assert_eq!(layer.stats().queued, 1);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(run_tasks_until(100, || layer.stats().body_timeouts == 1).await);
    assert!(b.is_woken());
    assert_pending!(b.poll());
    // b was admitted and reached the inner service, well within its deadline.
    let (_req, send) = assert_ready!(handle.poll_request()).unwrap();
    send.send_response(ok(Frames::empty()));
    assert_eq!(assert_ready_ok!(b.poll()).status(), 200);
    assert_identity(&layer);
}

#[test]
fn the_reaper_comes_back_after_its_runtime_shut_down() {
    let paused = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    };
    let layer = fixed(2);
    let (mut svc, mut handle) = mocked(&layer);
    let mut respond = |svc: &mut surgepool_tower::Admission<support::Mock>| {
        let mut call = spawn(svc.call(get()));
        assert_pending!(call.poll());
        let (_req, send) = assert_ready!(handle.poll_request()).unwrap();
        send.send_response(ok(stalled()));
        assert_ready_ok!(call.poll()).into_body()
    };
    // A body parked on a runtime that then shuts down (its reaper task is dropped)...
    let first = paused().block_on(async { respond(&mut svc) });
    // ...and one on a new runtime: a new reaper releases both in time.
    paused().block_on(async {
        let _second = respond(&mut svc);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(run_tasks_until(100, || layer.limiter().in_flight() == 0).await);
    });
    assert_eq!(layer.stats().body_timeouts, 2);
    drop(first);
    assert_eq!(layer.stats().limiter.dropped, 2);
}
