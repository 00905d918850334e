//! Bounded (issue 2, point 1): at most `limit` tasks run at once and at most
//! `queue_capacity` wait; `try_submit` never waits and hands the future back, unpolled,
//! inside `Full` when both are full; `queue_capacity(0)` admits only while a slot is free.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use surgepool::{Limit, Pool, SubmitError};
use tokio::sync::watch;

mod support;
use support::assert_identities;

/// Counts tasks inside their future and keeps the highest count seen.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
    }
    fn exit(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// For each (limit, queue) pair: fill both exactly, check the next is refused with its
/// future, release, check that everything ran and at most `limit` ran at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_and_queue_bound_exactly() {
    for (limit, queue) in [(1, 0), (1, 1), (2, 3), (3, 0), (4, 16), (8, 1)] {
        let pool = Pool::builder()
            .limit(Limit::fixed(limit))
            .queue_capacity(queue)
            .build()
            .unwrap();
        let gauge = Arc::new(Gauge::default());
        let (go, gate) = watch::channel(false);
        let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
        let handles: Vec<_> = (0..limit + queue)
            .map(|_| {
                let (gauge, mut gate) = (gauge.clone(), gate.clone());
                let entered_tx = entered_tx.clone();
                pool.try_submit(async move {
                    gauge.enter();
                    entered_tx.send(()).unwrap();
                    gate.wait_for(|g| *g).await.unwrap();
                    gauge.exit();
                })
                .unwrap_or_else(|e| panic!("limit {limit} queue {queue}: refused early: {e}"))
            })
            .collect();
        // Every slot is busy inside its task; the queued ones have not started.
        for _ in 0..limit {
            entered.recv().await.unwrap();
        }
        assert_eq!(gauge.now.load(Ordering::SeqCst), limit);
        let s = pool.snapshot();
        assert_eq!((s.running, s.queued), (limit as u64, queue as u64), "{s:?}");
        let polled = Arc::new(AtomicBool::new(false));
        let p = polled.clone();
        match pool.try_submit(async move { p.store(true, Ordering::SeqCst) }) {
            Err(SubmitError::Full(fut)) => {
                assert!(
                    !polled.load(Ordering::SeqCst),
                    "the refused future was polled"
                );
                fut.await;
                assert!(polled.load(Ordering::SeqCst));
            }
            other => panic!("limit {limit} queue {queue}: expected Full, got {other:?}"),
        }
        go.send(true).unwrap();
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(gauge.peak.load(Ordering::SeqCst), limit);
        let s = pool.snapshot();
        assert_eq!(
            (s.completed, s.rejected, s.running, s.queued),
            ((limit + queue) as u64, 1, 0, 0)
        );
        assert_identities(&s);
    }
}

/// Many more tasks than slots, submitted in waves as room appears: the peak of tasks
/// running at once never exceeds the limit, and the pool's own gauge agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_holds_under_churn() {
    let pool = Pool::builder()
        .limit(Limit::fixed(3))
        .queue_capacity(5)
        .build()
        .unwrap();
    let gauge = Arc::new(Gauge::default());
    let mut handles = Vec::new();
    let mut refused = 0;
    for i in 0..2_000u32 {
        let g = gauge.clone();
        let task = async move {
            g.enter();
            for _ in 0..(i % 3) {
                tokio::task::yield_now().await;
            }
            g.exit();
        };
        match pool.try_submit(task) {
            Ok(h) => handles.push(h),
            Err(e) => {
                assert!(e.is_full());
                refused += 1;
                tokio::task::yield_now().await;
            }
        }
        let s = pool.snapshot();
        assert!(s.running <= 3 && s.queued <= 5, "{s:?}");
    }
    for h in handles {
        h.await.unwrap();
    }
    assert!(gauge.peak.load(Ordering::SeqCst) <= 3);
    let s = pool.snapshot();
    assert_eq!(s.rejected, refused);
    assert_eq!(s.completed + s.rejected, 2_000);
    assert_identities(&s);
}

#[tokio::test]
async fn a_zero_queue_admits_only_while_a_slot_is_free() {
    let pool = Pool::builder()
        .limit(Limit::fixed(2))
        .queue_capacity(0)
        .build()
        .unwrap();
    let (go, gate) = watch::channel(false);
    let block = |mut gate: watch::Receiver<bool>| async move {
        gate.wait_for(|g| *g).await.unwrap();
    };
    let a = pool.try_submit(block(gate.clone())).unwrap();
    let b = pool.try_submit(block(gate.clone())).unwrap();
    for _ in 0..3 {
        assert!(pool.try_submit(async {}).unwrap_err().is_full());
    }
    assert_eq!(pool.snapshot().queued, 0);
    go.send(true).unwrap();
    a.await.unwrap();
    b.await.unwrap();
    // Room again, and still never a queue.
    let c = pool.try_submit(block(gate.clone())).unwrap();
    c.await.unwrap();
    let s = pool.snapshot();
    assert_eq!((s.completed, s.rejected, s.queued), (3, 3, 0));
}

/// A queued task starts the moment a slot frees, in FIFO order.
#[tokio::test]
async fn queued_tasks_run_in_arrival_order() {
    let pool = Pool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(10)
        .build()
        .unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..10)
        .map(|i| {
            let order = order.clone();
            pool.try_submit(async move { order.lock().unwrap().push(i) })
                .unwrap()
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..10).collect::<Vec<_>>());
}

/// `try_submit` never waits, even on a pool whose tasks never end.
#[tokio::test]
async fn try_submit_never_waits() {
    let pool = Pool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(1)
        .build()
        .unwrap();
    let _a = pool.try_submit(std::future::pending::<()>()).unwrap();
    let _b = pool.try_submit(std::future::pending::<()>()).unwrap();
    // Synchronous: if it waited, this single-threaded test would hang here.
    for _ in 0..1_000 {
        assert!(pool.try_submit(async {}).unwrap_err().is_full());
    }
    assert_eq!(pool.snapshot().rejected, 1_000);
}
