//! `submit_timeout` for the blocking pool (issue 2, points 2 and 8): it blocks the caller
//! until room comes, hands the closure back in `Timeout` when the wait runs out, and in
//! `Closed` when the pool closes meanwhile. Each offer counts once.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use surgepool::{BlockingPool, Limit, SubmitError};

mod support;
use support::assert_identities;

fn single_slot() -> BlockingPool {
    BlockingPool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(0)
        .build()
        .unwrap()
}

#[test]
fn submit_timeout_with_room_is_admitted_at_once() {
    let pool = single_slot();
    let h = pool.submit_timeout(|| 1, Duration::ZERO).unwrap();
    assert_eq!(h.join().unwrap(), 1);
    let s = pool.snapshot();
    assert_eq!((s.submitted, s.accepted, s.rejected), (1, 1, 0));
}

#[test]
fn submit_timeout_hands_the_closure_back_after_at_least_the_wait() {
    let pool = single_slot();
    let (tx, rx) = mpsc::channel::<()>();
    let busy = pool.try_submit(move || rx.recv().unwrap()).unwrap();
    let wait = Duration::from_millis(20);
    let t0 = Instant::now();
    match pool.submit_timeout(|| 3, wait) {
        Err(SubmitError::Timeout(f)) => assert_eq!(f(), 3),
        other => panic!("expected Timeout, got {other:?}"),
    }
    // A lower bound only: the call may not give up early.
    assert!(t0.elapsed() >= wait);
    tx.send(()).unwrap();
    busy.join().unwrap();
    let s = pool.snapshot();
    assert_eq!((s.submitted, s.accepted, s.rejected), (2, 1, 1));
    assert_identities(&s);
}

/// A caller blocked in `submit_timeout` gets in when the slot frees; a waiting caller is
/// counted once, as accepted.
#[test]
fn a_blocked_caller_gets_the_freed_slot() {
    let pool = single_slot();
    let (tx, rx) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    let busy = pool
        .try_submit(move || {
            started_tx.send(()).unwrap();
            rx.recv().unwrap()
        })
        .unwrap();
    started.recv().unwrap();
    let waiter = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            // Generous: a hang guard, never reached unless the wakeup is lost.
            pool.submit_timeout(|| "in", Duration::from_secs(120))
                .map(|h| h.join().unwrap())
                .map_err(|e| e.to_string())
        })
    };
    tx.send(()).unwrap();
    busy.join().unwrap();
    assert_eq!(waiter.join().unwrap(), Ok("in"));
    let s = pool.snapshot();
    assert_eq!((s.submitted, s.accepted, s.rejected), (2, 2, 0), "{s:?}");
}

/// Closing wakes blocked callers at once with their closures.
#[test]
fn close_hands_blocked_callers_their_closures_back() {
    let pool = single_slot();
    let (tx, rx) = mpsc::channel::<()>();
    let busy = pool.try_submit(move || rx.recv().unwrap()).unwrap();
    let (ready_tx, ready) = mpsc::channel::<()>();
    let waiters: Vec<_> = (0..3)
        .map(|i| {
            let pool = pool.clone();
            let ready_tx = ready_tx.clone();
            std::thread::spawn(move || {
                ready_tx.send(()).unwrap();
                match pool.submit_timeout(move || i, Duration::from_secs(120)) {
                    Err(SubmitError::Closed(f)) => f(),
                    other => panic!("expected Closed, got {other:?}"),
                }
            })
        })
        .collect();
    for _ in 0..3 {
        ready.recv().unwrap();
    }
    // Whether a caller is already blocked or arrives after the close, it gets Closed (the
    // slot stays busy until after the close, so none can be admitted).
    pool.close();
    for (i, w) in waiters.into_iter().enumerate() {
        assert_eq!(w.join().unwrap(), i);
    }
    tx.send(()).unwrap();
    busy.join().unwrap();
    let s = pool.snapshot();
    assert_eq!((s.submitted, s.accepted, s.rejected), (4, 1, 3), "{s:?}");
    assert_identities(&s);
}

#[test]
fn submit_timeout_on_a_closed_pool_returns_at_once() {
    let pool = single_slot();
    pool.close();
    let e = pool.submit_timeout(|| 1, Duration::MAX).unwrap_err();
    assert!(e.is_closed());
    assert_eq!(e.into_inner()(), 1);
}

/// Many threads wait for a single slot at once: all get in, one at a time.
#[test]
fn many_blocked_callers_all_get_in() {
    let pool = single_slot();
    let threads: Vec<_> = (0..8u64)
        .map(|i| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                (0..50u64)
                    .map(|j| {
                        pool.submit_timeout(move || i * 100 + j, Duration::from_secs(120))
                            .unwrap()
                            .join()
                            .unwrap()
                    })
                    .sum::<u64>()
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, (0..8u64).map(|i| i * 5_000 + 1_225).sum::<u64>());
    let s = pool.snapshot();
    assert_eq!((s.completed, s.rejected), (400, 0));
    assert_identities(&s);
}
