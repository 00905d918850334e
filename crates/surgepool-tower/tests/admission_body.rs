//! A streaming body holds its request's permit until it ends.

mod support;

use std::pin::Pin;
use std::task::Poll;

use http::{HeaderMap, HeaderValue};
use http_body::Body;
use support::{fixed, get, mocked, ok, Frames};
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
