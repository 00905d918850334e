//! The bounded queue and the deadline that covers the queue wait and the inner call.
//! Time is paused: `advance` moves it, nothing sleeps.

mod support;

use std::time::Duration;

use support::{assert_identity, get, mocked, ok, Frames};
use surgepool::Limit;
use surgepool_tower::{AdmissionLayer, Reason};
use tokio_test::task::spawn;
use tokio_test::{assert_pending, assert_ready, assert_ready_ok};
use tower::Service;

fn queued_layer(limit: usize, queue: usize, deadline_ms: u64) -> AdmissionLayer {
    AdmissionLayer::builder()
        .limit(Limit::fixed(limit))
        .queue_capacity(queue)
        .deadline(Duration::from_millis(deadline_ms))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_is_admitted_when_a_permit_frees_up() {
    let layer = queued_layer(1, 1, 1_000);
    let (mut svc, mut handle) = mocked(&layer);

    let mut a = spawn(svc.call(get()));
    let mut b = spawn(svc.call(get()));
    let mut c = spawn(svc.call(get()));
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    assert_eq!(layer.stats().queued, 1);
    // The queue holds one: the third is shed at once.
    let shed = assert_ready_ok!(c.poll());
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.extensions().get::<Reason>(), Some(&Reason::Overloaded));

    let (_req, send) = handle.next_request().await.unwrap();
    assert_pending!(handle.poll_request()); // b is still queued
    send.send_response(ok(Frames::empty()));
    assert_eq!(assert_ready_ok!(a.poll()).status(), 200);

    assert!(b.is_woken());
    assert_pending!(b.poll());
    assert_eq!(layer.stats().queued, 0);
    let (_req, send) = assert_ready!(handle.poll_request()).unwrap();
    send.send_response(ok(Frames::empty()));
    assert_eq!(assert_ready_ok!(b.poll()).status(), 200);

    let stats = layer.stats();
    assert_eq!(
        (stats.admitted, stats.overloaded, stats.queue_timeouts),
        (2, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_times_out_at_its_deadline() {
    let layer = queued_layer(1, 4, 500);
    let (mut svc, mut handle) = mocked(&layer);

    let mut a = spawn(svc.call(get()));
    assert_pending!(a.poll());
    let _first = handle.next_request().await.unwrap();

    tokio::time::advance(Duration::from_millis(100)).await;
    let mut b = spawn(svc.call(get())); // its deadline is 600 ms after start
    assert_pending!(b.poll());

    tokio::time::advance(Duration::from_millis(499)).await;
    assert_pending!(b.poll());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(b.is_woken());
    let response = assert_ready_ok!(b.poll());
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(
        response.extensions().get::<Reason>(),
        Some(&Reason::QueueTimeout)
    );

    let stats = layer.stats();
    assert_eq!((stats.queue_timeouts, stats.queued), (1, 0));
    // The queued request never held a permit, so the limiter saw nothing from it.
    assert_eq!(stats.limiter.dropped, 0);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_counts_from_the_call_not_from_the_first_wait() {
    // The layer arms the deadline's timer only when a request first has to wait (one answered
    // on its first poll never touches the timer wheel); the deadline itself still runs from
    // the call: a future first polled 600 ms after it was made has 400 ms left, not 1 s.
    let layer = queued_layer(1, 1, 1_000);
    let (mut svc, mut handle) = mocked(&layer);
    let mut a = spawn(svc.call(get()));
    tokio::time::advance(Duration::from_millis(600)).await;
    assert_pending!(a.poll());
    let _req = handle.next_request().await.unwrap();
    tokio::time::advance(Duration::from_millis(399)).await;
    assert_pending!(a.poll());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(a.is_woken());
    let response = assert_ready_ok!(a.poll());
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.extensions().get::<Reason>(),
        Some(&Reason::Timeout)
    );
    assert_eq!(layer.stats().timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_covers_the_queue_wait_and_the_inner_call() {
    let layer = queued_layer(1, 1, 1_000);
    let (mut svc, mut handle) = mocked(&layer);

    let mut a = spawn(svc.call(get()));
    let mut b = spawn(svc.call(get()));
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    let (_req, send_a) = handle.next_request().await.unwrap();

    // b waits 600 ms in the queue...
    tokio::time::advance(Duration::from_millis(600)).await;
    send_a.send_response(ok(Frames::empty()));
    assert_ready_ok!(a.poll());
    assert_pending!(b.poll());
    let _req_b = assert_ready!(handle.poll_request()).unwrap();

    // ...so it has 400 ms left for the inner call, not a fresh second.
    tokio::time::advance(Duration::from_millis(399)).await;
    assert_pending!(b.poll());
    tokio::time::advance(Duration::from_millis(1)).await;
    let response = assert_ready_ok!(b.poll());
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.extensions().get::<Reason>(),
        Some(&Reason::Timeout)
    );

    let stats = layer.stats();
    assert_eq!(stats.timeouts, 1);
    // A timed-out admitted request is a drop, and its permit is back.
    assert_eq!((stats.limiter.in_flight, stats.limiter.dropped), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn the_deadline_covers_waiting_for_inner_readiness() {
    let layer = AdmissionLayer::builder()
        .limit(Limit::fixed(1))
        .deadline(Duration::from_millis(50))
        .build()
        .unwrap();
    let (mut svc, mut handle) = mocked(&layer);
    handle.allow(0);
    let mut a = spawn(svc.call(get()));
    assert_pending!(a.poll());
    tokio::time::advance(Duration::from_millis(50)).await;
    let response = assert_ready_ok!(a.poll());
    assert_eq!(
        response.extensions().get::<Reason>(),
        Some(&Reason::Timeout)
    );
    assert_eq!(layer.limiter().in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_queued_request_gives_back_its_place() {
    let layer = queued_layer(1, 1, 1_000);
    let (mut svc, _handle) = mocked(&layer);
    let mut a = spawn(svc.call(get()));
    assert_pending!(a.poll());
    let mut b = spawn(svc.call(get()));
    assert_pending!(b.poll());
    assert_eq!(layer.stats().queued, 1);
    drop(b);
    assert_eq!(layer.stats().queued, 0);
    // The place is free again.
    let mut c = spawn(svc.call(get()));
    assert_pending!(c.poll());
    assert_eq!(layer.stats().queued, 1);
    assert_identity(&layer);
}

#[tokio::test(start_paused = true)]
async fn requests_cancelled_while_queued_are_counted_and_the_identity_holds() {
    let layer = queued_layer(1, 2, 1_000);
    let (mut svc, mut handle) = mocked(&layer);

    let mut a = spawn(svc.call(get()));
    assert_pending!(a.poll());
    assert_identity(&layer);
    let mut b = spawn(svc.call(get()));
    let mut c = spawn(svc.call(get()));
    assert_pending!(b.poll());
    assert_pending!(c.poll());
    let mut d = spawn(svc.call(get()));
    assert_eq!(assert_ready_ok!(d.poll()).status(), 503);
    assert_identity(&layer);

    // b's client goes away while it waits: counted, and the identity still holds.
    drop(b);
    let stats = layer.stats();
    assert_eq!((stats.requests, stats.cancelled, stats.queued), (4, 1, 1));
    assert_identity(&layer);

    // A queued future dropped before its first poll is cancelled too.
    drop(svc.call(get()));
    assert_eq!(layer.stats().cancelled, 2);
    assert_identity(&layer);

    // c is admitted when a finishes; a new one times out in the queue.
    let (_req, send) = handle.next_request().await.unwrap();
    send.send_response(ok(Frames::empty()));
    assert_ready_ok!(a.poll());
    assert_pending!(c.poll());
    let mut e = spawn(svc.call(get()));
    assert_pending!(e.poll());
    tokio::time::advance(Duration::from_millis(1_000)).await;
    assert_eq!(assert_ready_ok!(e.poll()).status(), 503);

    let stats = layer.stats();
    assert_eq!(
        (
            stats.requests,
            stats.admitted,
            stats.overloaded,
            stats.queue_timeouts,
            stats.cancelled,
            stats.queued
        ),
        (6, 2, 1, 1, 2, 0)
    );
    assert_identity(&layer);
    // Cancelled requests never held a permit: the limiter saw nothing of them.
    assert_eq!(stats.limiter.dropped, 0);
    drop(c);
}

#[test]
fn bad_settings_are_errors() {
    let err = AdmissionLayer::builder()
        .deadline(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "deadline");
    let err = AdmissionLayer::builder()
        .queue_capacity(1)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "queue_capacity");
    assert!(err.to_string().contains("deadline"));
    let err = AdmissionLayer::new(Limit::fixed(0)).unwrap_err();
    assert_eq!(err.setting(), "limit");
    let err = AdmissionLayer::builder()
        .body_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "body_timeout");
}

#[test]
fn a_retry_after_beyond_what_clients_can_read_is_a_build_error() {
    use http::StatusCode;
    use surgepool_tower::OverloadResponse;

    for too_long in [
        Duration::MAX,
        Duration::new(u64::MAX, 0),
        OverloadResponse::MAX_RETRY_AFTER + Duration::from_nanos(1),
    ] {
        let response = OverloadResponse::http(StatusCode::SERVICE_UNAVAILABLE, Some(too_long));
        // Building the response itself never panics: the header saturates.
        assert_eq!(
            response.make(Reason::Overloaded).headers()["retry-after"],
            "2147483647"
        );
        let err = AdmissionLayer::builder()
            .overload_response(response)
            .build()
            .unwrap_err();
        assert_eq!(err.setting(), "overload_response", "{too_long:?}");
        assert!(err.to_string().contains("Retry-After"), "{err}");
    }
    let longest = OverloadResponse::http(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(OverloadResponse::MAX_RETRY_AFTER),
    );
    assert!(AdmissionLayer::builder()
        .overload_response(longest)
        .build()
        .is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_huge_deadline_neither_panics_nor_fires() {
    let layer = queued_layer(1, 1, 1);
    let layer = AdmissionLayer::builder()
        .limiter(layer.limiter().clone())
        .queue_capacity(1)
        .deadline(Duration::MAX)
        .body_timeout(Duration::MAX)
        .build()
        .unwrap();
    let (mut svc, mut handle) = mocked(&layer);
    let mut a = spawn(svc.call(get()));
    let mut b = spawn(svc.call(get()));
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    tokio::time::advance(Duration::from_secs(86_400 * 365)).await;
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    let (_req, send) = handle.next_request().await.unwrap();
    let mut frames = Frames::data(&["x"]);
    frames.0.push_back(None); // a body that stalls
    send.send_response(ok(frames));
    let body = assert_ready_ok!(a.poll()).into_body();
    tokio::time::advance(Duration::from_secs(86_400 * 365)).await;
    tokio::task::yield_now().await;
    // No bound: the stalled body still holds the permit a year later, and b still waits.
    assert_eq!(layer.limiter().in_flight(), 1);
    assert_pending!(b.poll());
    drop(body);
    assert_pending!(b.poll());
    assert_identity(&layer);
}

#[tokio::test(start_paused = true)]
async fn cancellation_at_every_await_keeps_every_count() {
    let layer = queued_layer(2, 2, 10_000);
    let (mut svc, mut handle) = mocked(&layer);

    // 1. Admitted, waiting for the inner service's readiness.
    handle.allow(0);
    let mut waiting_ready = spawn(svc.call(get()));
    assert_pending!(waiting_ready.poll());
    drop(waiting_ready);
    assert_eq!(layer.limiter().in_flight(), 0);
    handle.allow(10);

    // 2. Admitted, the inner call in progress.
    let mut calling = spawn(svc.call(get()));
    assert_pending!(calling.poll());
    let _req = handle.next_request().await.unwrap();
    drop(calling);

    // 3. Admitted in `call`, and passed to the (ready) inner service there; the response
    // future never polled.
    drop(svc.call(get()));
    let _req = handle.next_request().await.unwrap();

    // 4. Queued (behind two held permits), polled once, and never polled.
    let mut a = spawn(svc.call(get()));
    let mut b = spawn(svc.call(get()));
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    let mut queued = spawn(svc.call(get()));
    assert_pending!(queued.poll());
    drop(queued);
    drop(svc.call(get()));

    // 5. Shed, the 503 never read.
    let mut c = spawn(svc.call(get()));
    let mut d = spawn(svc.call(get()));
    assert_pending!(c.poll());
    assert_pending!(d.poll());
    drop(svc.call(get())); // queue full: shed in `call`

    // 6. Answered, the body dropped unread.
    let (_req, send_a) = handle.next_request().await.unwrap();
    let (_req, _send_b) = handle.next_request().await.unwrap();
    send_a.send_response(ok(Frames::data(&["unread"])));
    drop(assert_ready_ok!(a.poll()).into_body());
    drop((b, c, d));

    let s = layer.stats();
    assert_identity(&layer);
    // Admitted: 1, 2, 3, a, b. Cancelled in the queue: the two of step 4, then c and d
    // (dropped before they were polled again to take the permit a gave back).
    assert_eq!(
        (s.requests, s.admitted, s.cancelled, s.overloaded),
        (10, 5, 4, 1)
    );
    assert_eq!((s.queued, s.limiter.in_flight), (0, 0));
    // Each admitted permit was released exactly once.
    assert_eq!(
        s.limiter.succeeded + s.limiter.dropped + s.limiter.ignored,
        s.admitted,
        "{s:?}"
    );
}
