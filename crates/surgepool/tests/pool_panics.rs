//! Panic isolation (issue 2, point 3): a panicking task ends as a `TaskError` with
//! `is_panic()` and its message; the worker lives on; capacity is unchanged after 10,000
//! panics; the panic hook sees each one, and a panicking hook is contained too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use surgepool::{Limit, Pool};
use tokio::sync::watch;

mod support;
use support::assert_identities;

/// Silences the default panic printout for the test's duration (the panics are expected).
fn quiet() -> impl Drop {
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = std::panic::take_hook();
        }
    }
    std::panic::set_hook(Box::new(|_| {}));
    Restore
}

#[tokio::test]
async fn the_message_comes_back_for_str_and_string_payloads_and_none_otherwise() {
    let _q = quiet();
    let pool = Pool::builder().build().unwrap();
    let e = pool
        .try_submit(async { panic!("static") })
        .unwrap()
        .await
        .unwrap_err();
    assert!(e.is_panic() && !e.is_cancelled() && !e.is_shed());
    assert_eq!(e.panic_message(), Some("static"));
    assert_eq!(e.to_string(), "task panicked: static");
    let n = 7;
    let e = pool
        .try_submit(async move { panic!("formatted {n}") })
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(e.panic_message(), Some("formatted 7"));
    let e = pool
        .try_submit(async { std::panic::panic_any(42u32) })
        .unwrap()
        .await
        .unwrap_err();
    assert!(e.is_panic());
    assert_eq!(e.panic_message(), None);
    assert_eq!(e.to_string(), "task panicked");
}

/// A panic at a later poll (after an await) is caught just the same, and the task's
/// other state is dropped.
#[tokio::test]
async fn a_panic_after_an_await_is_caught() {
    let _q = quiet();
    let pool = Pool::builder().build().unwrap();
    let h = pool
        .try_submit(async {
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
            panic!("later");
        })
        .unwrap();
    assert_eq!(h.await.unwrap_err().panic_message(), Some("later"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_panics_leave_capacity_and_workers_unchanged() {
    let _q = quiet();
    let seen = Arc::new(AtomicUsize::new(0));
    let hook_seen = seen.clone();
    let pool = Pool::builder()
        .limit(Limit::fixed(4))
        .queue_capacity(10_000)
        .on_panic(move |e| {
            assert!(e.is_panic());
            hook_seen.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let handles: Vec<_> = (0..10_000)
        .map(|i| pool.try_submit(async move { panic!("p{i}") }).unwrap())
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(
            h.await.unwrap_err().panic_message(),
            Some(&*format!("p{i}"))
        );
    }
    assert_eq!(seen.load(Ordering::SeqCst), 10_000);
    let s = pool.snapshot();
    assert_eq!((s.panicked, s.running, s.queued), (10_000, 0, 0));
    assert!(s.workers <= 4, "{s:?}");
    assert_eq!(pool.limiter_stats().in_flight, 0);
    assert_identities(&s);
    // All four slots and the full queue are still there.
    let (go, gate) = watch::channel(false);
    let held: Vec<_> = (0..4 + 10_000)
        .map(|_| {
            let mut gate = gate.clone();
            pool.try_submit(async move { gate.wait_for(|g| *g).await.map(|_| ()).ok() })
                .unwrap()
        })
        .collect();
    let s = pool.snapshot();
    assert_eq!((s.running, s.queued), (4, 10_000));
    assert!(pool.try_submit(async {}).unwrap_err().is_full());
    go.send(true).unwrap();
    for h in held {
        h.await.unwrap();
    }
}

#[tokio::test]
async fn a_panicking_hook_is_contained() {
    let _q = quiet();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c = calls.clone();
    let pool = Pool::builder()
        .limit(Limit::fixed(1))
        .on_panic(move |e| {
            c.lock().unwrap().push(e.to_string());
            panic!("the hook itself panics");
        })
        .build()
        .unwrap();
    for _ in 0..3 {
        let e = pool
            .try_submit(async { panic!("task") })
            .unwrap()
            .await
            .unwrap_err();
        assert_eq!(e.panic_message(), Some("task"));
    }
    assert_eq!(calls.lock().unwrap().len(), 3);
    assert_eq!(pool.try_submit(async { 1 }).unwrap().await.unwrap(), 1);
}

/// A future whose destructor panics, once it completed: the task's result stands and the
/// pool lives on.
#[tokio::test]
async fn a_panicking_destructor_is_contained() {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("drop bomb");
        }
    }
    let _q = quiet();
    let pool = Pool::builder().limit(Limit::fixed(1)).build().unwrap();
    let h = pool
        .try_submit(async {
            let _bomb = Bomb;
            tokio::task::yield_now().await;
            5
        })
        .unwrap();
    // The destructor runs inside the poll that returns 5, so the task panics.
    assert!(h.await.unwrap_err().is_panic());
    // Aborting a queued task whose future holds a bomb: dropped outside the lock, contained.
    let (go, gate) = watch::channel(false);
    let mut g = gate.clone();
    let blocker = pool
        .try_submit(async move { g.wait_for(|g| *g).await.map(|_| ()).ok() })
        .unwrap();
    let bomb = Bomb;
    let queued = pool
        .try_submit(async move {
            let _b = bomb;
        })
        .unwrap();
    queued.abort();
    assert!(queued.await.unwrap_err().is_cancelled());
    go.send(true).unwrap();
    blocker.await.unwrap();
    assert_eq!(pool.try_submit(async { 2 }).unwrap().await.unwrap(), 2);
    assert_identities(&pool.snapshot());
}
