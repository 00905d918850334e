//! Helpers shared by the test files.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use surgepool::Limit;
use surgepool_tower::{Admission, AdmissionLayer};
use tower::Layer;
use tower_test::mock;

/// A body that yields the given frames, one per poll, then ends; or stays pending forever
/// once `pending` frames are reached (`None` in the queue). The flag says whether
/// `is_end_stream` reports the end as soon as the queue is empty (like `Full`), or never
/// (like a stream that learns it is over only when polled again).
#[derive(Debug)]
pub struct Frames(pub VecDeque<Option<Frame<Bytes>>>, pub bool);

impl Frames {
    pub fn data(chunks: &[&'static str]) -> Frames {
        Frames(
            chunks
                .iter()
                .map(|c| Some(Frame::data(Bytes::from_static(c.as_bytes()))))
                .collect(),
            true,
        )
    }

    pub fn with_trailers(mut self, trailers: HeaderMap) -> Frames {
        self.0.push_back(Some(Frame::trailers(trailers)));
        self
    }

    pub fn empty() -> Frames {
        Frames(VecDeque::new(), true)
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.0.pop_front() {
            Some(Some(frame)) => Poll::Ready(Some(Ok(frame))),
            Some(None) => {
                self.0.push_front(None);
                Poll::Pending
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.1 && self.0.is_empty()
    }
}

pub type Mock = mock::Mock<Request<()>, Response<Frames>>;
pub type Handle = mock::Handle<Request<()>, Response<Frames>>;

/// A layer over a fixed limit of `n`, no queue.
pub fn fixed(n: usize) -> AdmissionLayer {
    AdmissionLayer::new(Limit::fixed(n)).unwrap()
}

pub fn mocked(layer: &AdmissionLayer) -> (Admission<Mock>, Handle) {
    let (mock, handle) = mock::pair();
    (layer.layer(mock), handle)
}

pub fn get() -> Request<()> {
    Request::get("/").body(()).unwrap()
}

pub fn ok(body: Frames) -> Response<Frames> {
    Response::new(body)
}

pub fn status(code: u16) -> Response<Frames> {
    let mut response = Response::new(Frames::empty());
    *response.status_mut() = StatusCode::from_u16(code).unwrap();
    response
}

/// Checks the layer's identity: every request is admitted, shed, cancelled or queued.
pub fn assert_identity(layer: &AdmissionLayer) {
    let s = layer.stats();
    assert_eq!(
        s.requests,
        s.admitted + s.overloaded + s.queue_timeouts + s.cancelled + s.queued as u64,
        "identity broken: {s:?}"
    );
    assert!(s.timeouts + s.body_timeouts <= s.admitted, "{s:?}");
}

/// Lets spawned tasks (the layer's body reaper) run, up to `max` scheduler turns, until
/// `done` holds; returns whether it did.
pub async fn run_tasks_until(max: usize, mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..max {
        if done() {
            return true;
        }
        tokio::task::yield_now().await;
    }
    done()
}
