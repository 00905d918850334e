//! User code that panics outside the closure's own call, on the blocking pool's threads
//! (issue 10, item 1): an output whose `Drop` panics, a panic payload whose `Drop` panics,
//! a panicking waker, a panicking limit algorithm (item 2). The thread must not die with its
//! slot: later closures run, and `shutdown()` returns. Shutdown reports are remembered
//! (item 6).

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use surgepool::{BlockingHandle, BlockingPool, Limit, TaskError};

mod support;
use support::assert_identities;

/// Long enough never to pass unless the pool lost a closure (then the test fails here
/// rather than hanging).
const GUARD: Duration = Duration::from_secs(30);

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

struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("bomb");
    }
}

struct PanickyPayload;

impl Drop for PanickyPayload {
    fn drop(&mut self) {
        panic!("payload drop");
    }
}

/// `join`, failing the test instead of hanging when the closure was lost.
fn join_within<T: Send + 'static>(handle: BlockingHandle<T>) -> Result<T, TaskError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(handle.join());
    });
    rx.recv_timeout(GUARD).expect("the closure was lost")
}

/// Runs `f` on its own thread; fails the test if it does not return in time.
fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(GUARD).expect("hung")
}

#[test]
fn an_output_whose_drop_panics_loses_nothing() {
    let _q = quiet();
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(10)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    drop(
        pool.try_submit(move || {
            let _ = rx.recv();
            Bomb
        })
        .unwrap(),
    );
    let b = pool.try_submit(|| 7).unwrap();
    let c = pool.try_submit(|| 8).unwrap();
    tx.send(()).unwrap();
    assert_eq!(join_within(b).unwrap(), 7);
    assert_eq!(join_within(c).unwrap(), 8);
    assert!(!pool.is_closed());
    let pool2 = pool.clone();
    let report = within(move || pool2.shutdown());
    assert!(!report.timed_out);
    let s = pool.snapshot();
    assert_eq!((s.completed, s.running, s.workers), (3, 0, 0), "{s:?}");
    assert_identities(&s);
}

#[test]
fn a_payload_whose_drop_panics_is_still_reported_as_a_panic() {
    let _q = quiet();
    let seen = Arc::new(AtomicUsize::new(0));
    let hook_seen = seen.clone();
    let with_hook = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .on_panic(move |e| {
            assert!(e.is_panic());
            hook_seen.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .unwrap();
    let err = join_within(
        with_hook
            .try_submit(|| std::panic::panic_any(PanickyPayload))
            .unwrap(),
    )
    .unwrap_err();
    assert!(err.is_panic(), "{err}");
    with_hook
        .try_spawn(|| std::panic::panic_any(PanickyPayload))
        .unwrap();
    assert_eq!(join_within(with_hook.try_submit(|| 1).unwrap()).unwrap(), 1);
    // Without a hook, a detached closure's payload is dropped directly: isolated too.
    let no_hook = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .build()
        .unwrap();
    no_hook
        .try_spawn(|| std::panic::panic_any(PanickyPayload))
        .unwrap();
    assert_eq!(join_within(no_hook.try_submit(|| 2).unwrap()).unwrap(), 2);
    for pool in [with_hook, no_hook] {
        let p = pool.clone();
        within(move || p.shutdown());
        let s = pool.snapshot();
        assert_eq!((s.running, s.cancelled, s.workers), (0, 0, 0), "{s:?}");
        assert_identities(&s);
    }
    assert_eq!(seen.load(Ordering::Relaxed), 2);
}

/// A waker whose `wake` panics (an executor polling the handle): the thread publishing
/// the result unwinds through the pool's own code. The closure it held next goes to
/// another thread.
#[test]
fn a_panicking_waker_does_not_lose_the_next_closure() {
    struct PanickingWaker;
    impl Wake for PanickingWaker {
        fn wake(self: Arc<Self>) {
            panic!("waker");
        }
    }
    let _q = quiet();
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(10)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let mut a = pool
        .try_submit(move || {
            let _ = rx.recv();
            1
        })
        .unwrap();
    let waker = Waker::from(Arc::new(PanickingWaker));
    assert!(pin!(&mut a)
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    let b = pool.try_submit(|| 2).unwrap();
    tx.send(()).unwrap();
    assert_eq!(join_within(b).unwrap(), 2);
    assert_eq!(join_within(a).unwrap(), 1);
    let p = pool.clone();
    within(move || p.shutdown());
    let s = pool.snapshot();
    assert_eq!((s.completed, s.running, s.workers), (2, 0, 0), "{s:?}");
    assert_identities(&s);
}

/// Issue 10, item 2, on threads (see the async pool's test of the same name).
#[test]
fn a_panicking_limit_algorithm_counts_each_closure_once() {
    let _q = quiet();
    // The review's trigger, `probe_interval(Duration::MAX)`, overflowed inside `finish`;
    // it is now refused at build time, and the largest interval accepted must not panic.
    // (The limiter catches a panicking algorithm itself, and the pools' `finish` catches
    // one too: `limit::limiter`'s unit test `a_panicking_algorithm_costs_the_sample_not_
    // the_slot` drives that path with a deliberately buggy algorithm.)
    assert!(Limit::adaptive_builder()
        .probe_interval(Duration::MAX)
        .build()
        .is_err());
    let limit = Limit::adaptive_builder()
        .probe_interval(Duration::from_secs(24 * 3600))
        .build()
        .unwrap();
    let pool = BlockingPool::builder().limit(limit).build().unwrap();
    for i in 0..2_000u64 {
        assert_eq!(join_within(pool.try_submit(move || i).unwrap()).unwrap(), i);
    }
    let p = pool.clone();
    within(move || p.shutdown());
    let s = pool.snapshot();
    assert_eq!(
        (s.completed, s.cancelled, s.running),
        (2_000, 0, 0),
        "{s:?}"
    );
    assert_identities(&s);
}

#[test]
fn a_shutdown_after_a_timed_out_one_remembers_the_deadline() {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(4)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let running = pool
        .try_submit(move || {
            let _ = rx.recv();
        })
        .unwrap();
    let queued = pool.try_submit(|| ()).unwrap();
    let first = pool.shutdown_timeout(Duration::ZERO);
    assert!(first.timed_out);
    assert_eq!(first.cancelled, 1);
    assert!(join_within(queued).unwrap_err().is_cancelled());
    tx.send(()).unwrap();
    let p = pool.clone();
    let later = within(move || p.shutdown());
    assert!(later.timed_out);
    assert_eq!(later.cancelled, 1);
    assert_eq!(later.drained, 1);
    assert!(running.is_finished());
    assert_eq!(pool.shutdown(), later);
    assert_identities(&pool.snapshot());
}

#[test]
fn every_handle_is_finished_when_shutdown_returns() {
    for _ in 0..300 {
        let pool = BlockingPool::builder()
            .limit(Limit::fixed(2))
            .build()
            .unwrap();
        let handles: Vec<_> = (0..4)
            .map(|i| pool.try_submit(move || i).unwrap())
            .collect();
        let p = pool.clone();
        within(move || p.shutdown());
        for h in &handles {
            assert!(h.is_finished());
        }
    }
}
