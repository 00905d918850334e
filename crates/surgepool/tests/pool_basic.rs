//! The pool's basic contract: run, bound, queue, hand back, panic, abort, drain.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use surgepool::{Limit, Pool, SubmitError};
use tokio::sync::oneshot;

mod support;
use support::assert_identities;

#[tokio::test]
async fn runs_a_task_and_returns_its_output() {
    let pool = Pool::builder().build().unwrap();
    let h = pool.try_submit(async { 40 + 2 }).unwrap();
    assert_eq!(h.await.unwrap(), 42);
    let s = pool.snapshot();
    assert_eq!(s.completed, 1);
    assert_identities(&s);
}

#[tokio::test]
async fn bounded_by_limit_and_queue_then_full_hands_the_future_back() {
    let pool = Pool::builder()
        .limit(Limit::fixed(2))
        .queue_capacity(3)
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut handles = Vec::new();
    for _ in 0..5 {
        let mut rx = rx.clone();
        handles.push(
            pool.try_submit(async move {
                rx.wait_for(|go| *go).await.unwrap();
            })
            .unwrap(),
        );
    }
    let err = pool.try_submit(async { 7 }).unwrap_err();
    assert!(err.is_full());
    assert_eq!(err.into_inner().await, 7);
    let s = pool.snapshot();
    assert_eq!((s.running, s.queued, s.rejected), (2, 3, 1));
    assert_identities(&s);
    tx.send(true).unwrap();
    for h in handles {
        h.await.unwrap();
    }
    let s = pool.snapshot();
    assert_eq!((s.completed, s.running, s.queued), (5, 0, 0));
    assert_identities(&s);
}

#[tokio::test]
async fn zero_queue_admits_only_under_the_limit() {
    let pool = Pool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(0)
        .build()
        .unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let first = pool.try_submit(async move { rx.await.ok() }).unwrap();
    assert!(pool.try_submit(async {}).unwrap_err().is_full());
    tx.send(()).unwrap();
    first.await.unwrap();
    pool.try_submit(async {}).unwrap().await.unwrap();
}

#[tokio::test]
async fn panics_are_isolated_and_capacity_is_unchanged() {
    let seen = Arc::new(AtomicUsize::new(0));
    let hook_seen = seen.clone();
    let pool = Pool::builder()
        .limit(Limit::fixed(2))
        .queue_capacity(10_000)
        .on_panic(move |e| {
            assert!(e.is_panic());
            hook_seen.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .unwrap();
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut handles = Vec::new();
    for i in 0..10_000 {
        handles.push(pool.try_submit(async move { panic!("task {i}") }).unwrap());
    }
    for (i, h) in handles.into_iter().enumerate() {
        let e = h.await.unwrap_err();
        assert!(e.is_panic());
        assert_eq!(e.panic_message(), Some(format!("task {i}").as_str()));
    }
    std::panic::set_hook(prev);
    assert_eq!(seen.load(Ordering::Relaxed), 10_000);
    let s = pool.snapshot();
    assert_eq!(s.panicked, 10_000);
    assert_identities(&s);
    // Still two slots.
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut hs = Vec::new();
    for _ in 0..2 {
        let mut rx = rx.clone();
        hs.push(
            pool.try_submit(async move { rx.wait_for(|g| *g).await.map(|_| ()).ok() })
                .unwrap(),
        );
    }
    assert_eq!(pool.snapshot().running, 2);
    tx.send(true).unwrap();
    for h in hs {
        h.await.unwrap();
    }
}

#[tokio::test]
async fn abort_cancels_queued_and_running_tasks() {
    let pool = Pool::builder().limit(Limit::fixed(1)).build().unwrap();
    let running = pool.try_submit(std::future::pending::<()>()).unwrap();
    let queued = pool.try_submit(async { 1 }).unwrap();
    queued.abort();
    assert!(queued.await.unwrap_err().is_cancelled());
    tokio::task::yield_now().await;
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    let s = pool.snapshot();
    assert_eq!(s.cancelled, 2);
    // The slot came back.
    pool.try_submit(async {}).unwrap().await.unwrap();
    assert_identities(&pool.snapshot());
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_and_shutdown_timeout_cancels() {
    let pool = Pool::builder().limit(Limit::fixed(2)).build().unwrap();
    for _ in 0..4 {
        drop(
            pool.try_submit(tokio::time::sleep(Duration::from_millis(10)))
                .unwrap(),
        );
    }
    let report = pool.shutdown().await;
    assert_eq!(report.drained, 4);
    assert!(!report.timed_out);
    assert!(pool.try_submit(async {}).unwrap_err().is_closed());
    let s = pool.snapshot();
    assert_eq!(s.completed, 4);
    assert_identities(&s);

    let pool = Pool::builder().limit(Limit::fixed(1)).build().unwrap();
    let a = pool
        .try_submit(tokio::time::sleep(Duration::from_secs(60)))
        .unwrap();
    let b = pool.try_submit(async {}).unwrap();
    let report = pool.shutdown_timeout(Duration::from_secs(1)).await;
    assert!(report.timed_out);
    assert_eq!(report.cancelled, 2);
    assert!(a.await.unwrap_err().is_cancelled());
    assert!(b.await.unwrap_err().is_cancelled());
    assert_identities(&pool.snapshot());
}

#[tokio::test(start_paused = true)]
async fn submit_waits_for_room_and_submit_timeout_hands_back() {
    let pool = Pool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(0)
        .build()
        .unwrap();
    let busy = pool
        .try_submit(tokio::time::sleep(Duration::from_millis(100)))
        .unwrap();
    match pool
        .submit_timeout(async { 5 }, Duration::from_millis(10))
        .await
    {
        Err(SubmitError::Timeout(f)) => assert_eq!(f.await, 5),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let h = pool.submit(async { 6 }).await.unwrap();
    busy.await.unwrap();
    assert_eq!(h.await.unwrap(), 6);
    assert_identities(&pool.snapshot());
}

#[test]
fn build_outside_a_runtime_is_an_error() {
    let err = Pool::builder().build().unwrap_err();
    assert_eq!(err.setting(), "runtime");
    let err = Pool::builder()
        .limit(Limit::fixed(2))
        .min_workers(3)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "min_workers");
}
