//! Thousands of requests on a multi-threaded runtime, cancelled at random awaits, with bodies
//! read to the end, dropped half-way or never polled: at quiescence every request is counted
//! exactly once and every permit was released exactly once. Nothing here depends on speed.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use support::{assert_identity, Frames};
use surgepool::Limit;
use surgepool_tower::AdmissionLayer;
use tower::{service_fn, Layer, Service};

/// xorshift64: a fixed, seedable sequence (no dependency, same run every time).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

async fn yields(n: u64) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_and_every_permit_is_counted_exactly_once() {
    const REQUESTS: u64 = 3_000;
    let layer = AdmissionLayer::builder()
        .limit(Limit::fixed(8))
        .queue_capacity(32)
        // Long enough never to fire: the test must not depend on how fast the machine is.
        .deadline(Duration::from_secs(3_600))
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|req: Request<u64>| async move {
        let seed = *req.body();
        yields(seed % 4).await;
        if seed % 17 == 0 {
            let mut response = Response::new(Frames::empty());
            *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            return Ok::<_, Infallible>(response);
        }
        Ok(Response::new(Frames::data(&["a", "b", "c"])))
    }));

    let mut tasks = Vec::new();
    for i in 0..REQUESTS {
        let mut svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i + 1));
            let call = svc.call(Request::new(rng.below(1_000)));
            // Cancel at a random await (queued, waiting for readiness, calling), or not at all.
            let cancel_after = rng.below(8);
            let response = tokio::select! {
                biased;
                response = call => response.unwrap(),
                () = yields(cancel_after) => return,
            };
            let mut body = response.into_body();
            match rng.below(3) {
                0 => drop(body), // never read
                1 => {
                    let _ = body.frame().await; // half-way
                }
                _ => {
                    while let Some(frame) = body.frame().await {
                        frame.unwrap();
                    }
                    assert!(body.is_end_stream());
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    assert_identity(&layer);
    let s = layer.stats();
    assert_eq!(s.requests, REQUESTS);
    assert_eq!((s.queued, s.limiter.in_flight), (0, 0));
    assert_eq!(
        s.limiter.succeeded + s.limiter.dropped + s.limiter.ignored,
        s.admitted,
        "every admitted request released its permit exactly once: {s:?}"
    );
    // The mix really exercised every path.
    assert!(
        s.admitted > 0 && s.overloaded > 0 && s.cancelled > 0,
        "{s:?}"
    );
}
