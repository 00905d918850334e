//! Panic isolation (issue 2, points 3 and 8) on threads: a panicking closure ends as a
//! `TaskError` with its message, its thread lives on and runs the next closure, capacity
//! is unchanged after 10,000 panics, and the hook sees each one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use surgepool::{BlockingPool, Limit};

mod support;
use support::assert_identities;

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

#[test]
fn messages_come_back_and_the_thread_lives_on() {
    let _q = quiet();
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .build()
        .unwrap();
    let e = pool
        .try_submit(|| -> () { panic!("boom") })
        .unwrap()
        .join()
        .unwrap_err();
    assert!(e.is_panic());
    assert_eq!(e.to_string(), "task panicked: boom");
    let e = pool
        .try_submit(|| std::panic::panic_any(1u8))
        .unwrap()
        .join()
        .unwrap_err();
    assert_eq!(e.panic_message(), None);
    // Same thread afterwards: the worker survived.
    let id = |pool: &BlockingPool| {
        pool.try_submit(|| std::thread::current().id())
            .unwrap()
            .join()
            .unwrap()
    };
    let before = id(&pool);
    let _ = pool.try_submit(|| -> () { panic!() }).unwrap().join();
    assert_eq!(id(&pool), before);
    assert_eq!(pool.snapshot().workers, 1);
}

#[test]
fn ten_thousand_panics_leave_capacity_unchanged() {
    let _q = quiet();
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(2))
        .queue_capacity(10_000)
        .on_panic(move |e| {
            assert!(e.is_panic());
            s2.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let handles: Vec<_> = (0..10_000)
        .map(|i| pool.try_submit(move || -> () { panic!("c{i}") }).unwrap())
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(
            h.join().unwrap_err().panic_message(),
            Some(&*format!("c{i}"))
        );
    }
    assert_eq!(seen.load(Ordering::SeqCst), 10_000);
    let s = pool.snapshot();
    assert_eq!((s.panicked, s.running, s.queued), (10_000, 0, 0));
    assert!(s.workers <= 2);
    assert_eq!(pool.limiter_stats().in_flight, 0);
    assert_identities(&s);
    // Both slots and the whole queue are still there.
    let (tx, rx) = mpsc::channel::<()>();
    let rx = Arc::new(std::sync::Mutex::new(rx));
    let (in_tx, entered) = mpsc::channel::<()>();
    let held: Vec<_> = (0..2 + 10_000)
        .map(|_| {
            let (rx, in_tx) = (rx.clone(), in_tx.clone());
            pool.try_submit(move || {
                let _ = in_tx.send(());
                rx.lock().unwrap().recv().unwrap()
            })
            .unwrap()
        })
        .collect();
    assert!(pool.try_submit(|| ()).unwrap_err().is_full());
    entered.recv().unwrap();
    for _ in 0..held.len() {
        tx.send(()).unwrap();
    }
    for h in held {
        h.join().unwrap();
    }
}

#[test]
fn a_panicking_hook_is_contained() {
    let _q = quiet();
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .on_panic(|_| panic!("hook"))
        .build()
        .unwrap();
    for _ in 0..3 {
        let e = pool
            .try_submit(|| -> () { panic!("task") })
            .unwrap()
            .join()
            .unwrap_err();
        assert_eq!(e.panic_message(), Some("task"));
    }
    assert_eq!(pool.try_submit(|| 1).unwrap().join().unwrap(), 1);
}

/// A queued closure whose captures panic on drop is cancelled at a shutdown deadline: the
/// drop's panic is contained and the pool still drains.
#[test]
fn a_panicking_capture_dropped_unrun_is_contained() {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("bomb");
        }
    }
    let _q = quiet();
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    let busy = pool
        .try_submit(move || {
            started_tx.send(()).unwrap();
            rx.recv().unwrap()
        })
        .unwrap();
    started.recv().unwrap();
    let bomb = Bomb;
    let queued = pool
        .try_submit(move || {
            let _b = bomb;
        })
        .unwrap();
    let report = pool.shutdown_timeout(std::time::Duration::ZERO);
    assert_eq!(report.cancelled, 1);
    assert!(queued.join().unwrap_err().is_cancelled());
    tx.send(()).unwrap();
    busy.join().unwrap();
    assert_identities(&pool.snapshot());
}
