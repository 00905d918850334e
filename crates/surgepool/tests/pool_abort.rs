//! `TaskHandle` (issue 2, point 6): awaiting gives the result; dropping detaches (the task
//! still runs and is counted); `abort` cancels, counted as cancelled, wherever the task is:
//! queued, handed to a worker but not yet polled, running, or finished (a no-op).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use surgepool::{Limit, Pool, TaskHandle};
use tokio::sync::{oneshot, watch};

mod support;
use support::assert_identities;

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn flag() -> (Arc<AtomicBool>, DropFlag) {
    let f = Arc::new(AtomicBool::new(false));
    (f.clone(), DropFlag(f))
}

fn blocker(pool: &Pool) -> (watch::Sender<bool>, TaskHandle<()>) {
    let (go, mut gate) = watch::channel(false);
    let h = pool
        .try_submit(async move {
            let _ = gate.wait_for(|g| *g).await;
        })
        .unwrap();
    (go, h)
}

#[tokio::test]
async fn aborting_a_queued_task_removes_it_at_once() {
    let pool = Pool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(1)
        .build()
        .unwrap();
    let (go, busy) = blocker(&pool);
    let ran = Arc::new(AtomicBool::new(false));
    let (dropped, guard) = flag();
    let r = ran.clone();
    let queued = pool
        .try_submit(async move {
            let _g = guard;
            r.store(true, Ordering::SeqCst);
        })
        .unwrap();
    assert!(pool.try_submit(async {}).unwrap_err().is_full());
    queued.abort();
    // Synchronously: out of the queue, future dropped, handle done.
    assert!(dropped.load(Ordering::SeqCst));
    assert!(queued.is_finished());
    assert_eq!(pool.snapshot().queued, 0);
    // Its queue place is free again.
    let next = pool.try_submit(async { 1 }).unwrap();
    assert!(queued.await.unwrap_err().is_cancelled());
    go.send(true).unwrap();
    busy.await.unwrap();
    assert_eq!(next.await.unwrap(), 1);
    assert!(!ran.load(Ordering::SeqCst));
    let s = pool.snapshot();
    assert_eq!((s.cancelled, s.completed), (1, 2));
    assert_identities(&s);
}

#[tokio::test]
async fn aborting_a_running_task_drops_it_at_its_next_poll_and_frees_the_slot() {
    let pool = Pool::builder().limit(Limit::fixed(1)).build().unwrap();
    let (started_tx, started) = oneshot::channel();
    let (dropped, guard) = flag();
    let h = pool
        .try_submit(async move {
            let _g = guard;
            started_tx.send(()).unwrap();
            std::future::pending::<()>().await;
        })
        .unwrap();
    started.await.unwrap();
    assert_eq!(pool.snapshot().running, 1);
    h.abort();
    assert!(h.await.unwrap_err().is_cancelled());
    assert!(dropped.load(Ordering::SeqCst));
    let s = pool.snapshot();
    assert_eq!((s.cancelled, s.running), (1, 0));
    assert_eq!(pool.limiter_stats().in_flight, 0);
    assert_eq!(pool.try_submit(async { 2 }).unwrap().await.unwrap(), 2);
    assert_identities(&pool.snapshot());
}

/// Handed to a (new or idle) worker, not yet polled: it is never polled at all.
#[tokio::test]
async fn aborting_before_the_first_poll_means_it_never_runs() {
    for min_workers in [0, 1] {
        let pool = Pool::builder()
            .limit(Limit::fixed(1))
            .min_workers(min_workers)
            .build()
            .unwrap();
        tokio::task::yield_now().await;
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        // On this single-threaded runtime the worker cannot poll before we yield.
        let h = pool
            .try_submit(async move { r.store(true, Ordering::SeqCst) })
            .unwrap();
        assert_eq!(pool.snapshot().running, 1);
        h.abort();
        assert!(h.await.unwrap_err().is_cancelled());
        assert!(!ran.load(Ordering::SeqCst));
        let s = pool.snapshot();
        assert_eq!((s.cancelled, s.running), (1, 0));
        assert_identities(&s);
    }
}

#[tokio::test]
async fn aborting_a_finished_task_changes_nothing() {
    let pool = Pool::builder().build().unwrap();
    let h = pool.try_submit(async { 3 }).unwrap();
    while !h.is_finished() {
        tokio::task::yield_now().await;
    }
    h.abort();
    h.abort();
    assert_eq!(h.await.unwrap(), 3);
    let s = pool.snapshot();
    assert_eq!((s.completed, s.cancelled), (1, 0));
}

#[tokio::test]
async fn abort_is_idempotent() {
    let pool = Pool::builder().limit(Limit::fixed(1)).build().unwrap();
    let h = pool.try_submit(std::future::pending::<()>()).unwrap();
    tokio::task::yield_now().await;
    for _ in 0..3 {
        h.abort();
    }
    assert!(h.await.unwrap_err().is_cancelled());
    assert_eq!(pool.snapshot().cancelled, 1);
}

/// A task may abort itself (its handle sent to it): it ends at its next await point.
#[tokio::test]
async fn a_task_can_abort_itself() {
    let pool = Pool::builder().build().unwrap();
    let (handle_tx, handle_rx) = oneshot::channel::<TaskHandle<()>>();
    let (after_tx, mut after_rx) = oneshot::channel::<()>();
    let h = pool
        .try_submit(async move {
            let me = handle_rx.await.unwrap();
            me.abort();
            tokio::task::yield_now().await;
            // Never reached: the task was dropped at the yield.
            after_tx.send(()).unwrap();
        })
        .unwrap();
    // The handle goes into the task; watch the outcome through the pool's counters.
    handle_tx.send(h).unwrap();
    while pool.snapshot().cancelled == 0 {
        tokio::task::yield_now().await;
    }
    assert!(after_rx.try_recv().is_err());
    assert_identities(&pool.snapshot());
}

#[tokio::test]
async fn a_dropped_handle_detaches_the_task_still_runs_and_is_counted() {
    let pool = Pool::builder().limit(Limit::fixed(1)).build().unwrap();
    let (tx, rx) = oneshot::channel();
    drop(pool.try_submit(async move { tx.send(5).unwrap() }).unwrap());
    assert_eq!(rx.await.unwrap(), 5);
    let report = pool.shutdown().await;
    assert_eq!(pool.snapshot().completed, 1);
    assert!(!report.timed_out);
}

/// Aborting a running task during a draining shutdown lets the shutdown finish.
#[tokio::test(start_paused = true)]
async fn abort_during_shutdown_lets_the_drain_end() {
    let pool = Pool::builder().limit(Limit::fixed(2)).build().unwrap();
    let stuck = pool.try_submit(std::future::pending::<()>()).unwrap();
    let queued_behind = pool.try_submit(std::future::pending::<()>()).unwrap();
    let shutdown = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.shutdown().await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!shutdown.is_finished());
    stuck.abort();
    queued_behind.abort();
    let report = shutdown.await.unwrap();
    assert!(!report.timed_out);
    // Aborted tasks are cancellations, not drained work (ShutdownReport's docs).
    assert_eq!((report.drained, report.cancelled), (0, 0), "{report:?}");
    let s = pool.snapshot();
    assert_eq!((s.cancelled, s.running, s.queued), (2, 0, 0));
    assert_identities(&s);
}

/// Many tasks aborted at every stage, on two threads: each handle gets exactly one
/// outcome and the counters agree with the handles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborts_racing_completion_agree_with_the_counters() {
    let pool = Pool::builder()
        .limit(Limit::fixed(3))
        .queue_capacity(64)
        .build()
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..3_000u32 {
        let h = match pool
            .submit(async move {
                for _ in 0..(i % 4) {
                    tokio::task::yield_now().await;
                }
                i
            })
            .await
        {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        };
        if i % 3 == 0 {
            h.abort();
        }
        handles.push(h);
    }
    let (mut ok, mut cancelled) = (0u64, 0u64);
    for (i, h) in handles.into_iter().enumerate() {
        match h.await {
            Ok(v) => {
                assert_eq!(v, i as u32);
                ok += 1;
            }
            Err(e) => {
                assert!(e.is_cancelled() && i % 3 == 0);
                cancelled += 1;
            }
        }
    }
    let s = pool.snapshot();
    assert_eq!((s.completed, s.cancelled), (ok, cancelled), "{s:?}");
    assert_eq!(ok + cancelled, 3_000);
    assert_identities(&s);
}
