//! The blocking pool's basic contract, with explicit synchronisation only.

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use surgepool::{BlockingPool, Limit, SubmitError};

mod support;
use support::assert_identities;

#[test]
fn runs_closures_and_joins() {
    let pool = BlockingPool::builder().build().unwrap();
    let h = pool.try_submit(|| 6 * 7).unwrap();
    assert_eq!(h.join().unwrap(), 42);
    assert_eq!(pool.shutdown().drained, 0);
    let s = pool.snapshot();
    assert_eq!(s.completed, 1);
    assert_identities(&s);
}

#[test]
fn bounded_then_full_hands_the_closure_back() {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(2))
        .queue_capacity(1)
        .build()
        .unwrap();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Arc::new(std::sync::Mutex::new(release_rx));
    let started = Arc::new(Barrier::new(3));
    let mut handles = Vec::new();
    for _ in 0..2 {
        let rx = release_rx.clone();
        let started = started.clone();
        handles.push(
            pool.try_submit(move || {
                started.wait();
                rx.lock().unwrap().recv().unwrap();
            })
            .unwrap(),
        );
    }
    started.wait();
    let queued = pool.try_submit(|| 3).unwrap();
    match pool.try_submit(|| 4) {
        Err(SubmitError::Full(f)) => assert_eq!(f(), 4),
        other => panic!("expected Full, got {other:?}"),
    }
    let s = pool.snapshot();
    assert_eq!((s.running, s.queued, s.rejected), (2, 1, 1));
    assert_identities(&s);
    release_tx.send(()).unwrap();
    release_tx.send(()).unwrap();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(queued.join().unwrap(), 3);
    pool.shutdown();
    assert_identities(&pool.snapshot());
}

#[test]
fn panics_are_isolated() {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(2))
        .queue_capacity(1000)
        .build()
        .unwrap();
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let handles: Vec<_> = (0..1000)
        .map(|i| {
            pool.try_submit(move || -> u32 { panic!("closure {i}") })
                .unwrap()
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let e = h.join().unwrap_err();
        assert_eq!(e.panic_message(), Some(format!("closure {i}").as_str()));
    }
    std::panic::set_hook(prev);
    assert_eq!(pool.try_submit(|| 1).unwrap().join().unwrap(), 1);
    let s = pool.snapshot();
    assert_eq!(s.panicked, 1000);
    assert_identities(&s);
}

#[test]
fn submit_timeout_hands_back_and_shutdown_timeout_cancels_queued() {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(1)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let running = pool
        .try_submit(move || {
            started_tx.send(()).unwrap();
            rx.recv().unwrap();
        })
        .unwrap();
    started_rx.recv().unwrap();
    let queued = pool.try_submit(|| 2).unwrap();
    match pool.submit_timeout(|| 3, Duration::from_millis(1)) {
        Err(SubmitError::Timeout(f)) => assert_eq!(f(), 3),
        other => panic!("expected Timeout, got {other:?}"),
    }
    let report = pool.shutdown_timeout(Duration::from_millis(1));
    assert!(report.timed_out);
    assert_eq!(report.cancelled, 1);
    assert!(queued.join().unwrap_err().is_cancelled());
    tx.send(()).unwrap();
    running.join().unwrap();
    assert!(pool.try_submit(|| ()).unwrap_err().is_closed());
    pool.shutdown();
    let s = pool.snapshot();
    assert_eq!((s.completed, s.cancelled, s.rejected), (1, 1, 2));
    assert_identities(&s);
}

#[tokio::test]
async fn the_handle_is_a_future_too() {
    let pool = BlockingPool::builder().build().unwrap();
    assert_eq!(pool.try_submit(|| "async").unwrap().await.unwrap(), "async");
}
