//! Bounded (issue 2, points 1 and 8) for the blocking pool: at most `limit` closures run at
//! once, at most `queue_capacity` wait, `try_submit` never blocks and hands the closure
//! back, uncalled, inside `Full`; `queue_capacity(0)` admits only while a slot is free.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};

use surgepool::{BlockingPool, Limit, SubmitError};

mod support;
use support::assert_identities;

#[test]
fn limit_and_queue_bound_exactly() {
    for (limit, queue) in [(1, 0), (1, 1), (2, 3), (3, 0), (4, 8)] {
        let pool = BlockingPool::builder()
            .limit(Limit::fixed(limit))
            .queue_capacity(queue)
            .build()
            .unwrap();
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        // The first `limit` closures meet here with the test: all slots busy at once.
        let all_in = Arc::new(Barrier::new(limit + 1));
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let go_rx = Arc::new(std::sync::Mutex::new(go_rx));
        let handles: Vec<_> = (0..limit + queue)
            .map(|i| {
                let (now, peak, all_in, go_rx) =
                    (now.clone(), peak.clone(), all_in.clone(), go_rx.clone());
                pool.try_submit(move || {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    if i < limit {
                        all_in.wait();
                    }
                    go_rx.lock().unwrap().recv().unwrap();
                    now.fetch_sub(1, Ordering::SeqCst);
                })
                .unwrap_or_else(|e| panic!("limit {limit} queue {queue}: {e}"))
            })
            .collect();
        all_in.wait();
        let s = pool.snapshot();
        assert_eq!((s.running, s.queued), (limit as u64, queue as u64), "{s:?}");
        let called = Arc::new(AtomicBool::new(false));
        let c = called.clone();
        match pool.try_submit(move || c.store(true, Ordering::SeqCst)) {
            Err(SubmitError::Full(f)) => {
                assert!(!called.load(Ordering::SeqCst));
                f();
                assert!(called.load(Ordering::SeqCst));
            }
            other => panic!("expected Full, got {other:?}"),
        }
        for _ in 0..limit + queue {
            go_tx.send(()).unwrap();
        }
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), limit);
        let s = pool.snapshot();
        assert_eq!((s.completed, s.rejected), ((limit + queue) as u64, 1));
        assert!(s.workers <= limit as u64);
        assert_identities(&s);
    }
}

#[test]
fn a_zero_queue_admits_only_while_a_slot_is_free() {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(0)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let busy = pool.try_submit(move || rx.recv().unwrap()).unwrap();
    for _ in 0..3 {
        assert!(pool.try_submit(|| ()).unwrap_err().is_full());
    }
    tx.send(()).unwrap();
    busy.join().unwrap();
    pool.try_submit(|| ()).unwrap().join().unwrap();
    let s = pool.snapshot();
    assert_eq!((s.completed, s.rejected, s.queued), (2, 3, 0));
}

#[test]
fn queued_closures_run_in_arrival_order() {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(20)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let busy = pool.try_submit(move || rx.recv().unwrap()).unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let order = order.clone();
            pool.try_submit(move || order.lock().unwrap().push(i))
                .unwrap()
        })
        .collect();
    tx.send(()).unwrap();
    busy.join().unwrap();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
}

/// Many submitters on many threads against a small pool: never more than the limit at
/// once, and every offer is accepted-and-run or handed back.
#[test]
fn the_limit_holds_under_contention() {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(2))
        .queue_capacity(4)
        .build()
        .unwrap();
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (pool, now, peak) = (pool.clone(), now.clone(), peak.clone());
            std::thread::spawn(move || {
                let (mut ok, mut back) = (Vec::new(), 0u64);
                for _ in 0..500 {
                    let (now, peak) = (now.clone(), peak.clone());
                    match pool.try_submit(move || {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        std::thread::yield_now();
                        now.fetch_sub(1, Ordering::SeqCst);
                    }) {
                        Ok(h) => ok.push(h),
                        Err(e) => {
                            assert!(e.is_full());
                            back += 1;
                        }
                    }
                }
                let ran = ok.len() as u64;
                for h in ok {
                    h.join().unwrap();
                }
                (ran, back)
            })
        })
        .collect();
    let (mut ran, mut back) = (0, 0);
    for t in threads {
        let (r, b) = t.join().unwrap();
        ran += r;
        back += b;
    }
    assert!(peak.load(Ordering::SeqCst) <= 2);
    let s = pool.snapshot();
    assert_eq!((s.completed, s.rejected), (ran, back));
    assert_eq!(ran + back, 2_000);
    assert_identities(&s);
}
