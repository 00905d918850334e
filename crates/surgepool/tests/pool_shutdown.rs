//! Shutdown (issue 2, point 5): `close` rejects with `Closed` and lets accepted work go on;
//! `shutdown` drains every accepted task, is idempotent, and concurrent callers all
//! return; a submit racing shutdown is accepted-and-run or rejected-and-returned, never
//! lost; `shutdown_timeout` cancels what is left at the deadline and reports it; dropping
//! the last `Pool` neither leaks workers nor blocks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use surgepool::{Limit, Pool, SubmitError};
use tokio::sync::{oneshot, watch};
use tokio::time::sleep;
use tokio_test::task;
use tokio_test::{assert_pending, assert_ready};

mod support;
use support::assert_identities;

const MS: Duration = Duration::from_millis(1);

async fn nap(d: Duration) {
    sleep(d).await
}

#[tokio::test(start_paused = true)]
async fn close_rejects_new_work_but_accepted_work_goes_on() {
    let pool = Pool::builder().limit(Limit::fixed(1)).build().unwrap();
    let running = pool.try_submit(nap(10 * MS)).unwrap();
    let queued = pool.try_submit(async { "queued" }).unwrap();
    pool.close();
    pool.close(); // idempotent
    assert!(pool.is_closed());
    match pool.try_submit(async { 9 }) {
        Err(SubmitError::Closed(fut)) => assert_eq!(fut.await, 9),
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(pool.submit(async {}).await.unwrap_err().is_closed());
    assert!(pool
        .submit_timeout(async {}, MS)
        .await
        .unwrap_err()
        .is_closed());
    running.await.unwrap();
    assert_eq!(queued.await.unwrap(), "queued");
    let s = pool.snapshot();
    assert_eq!((s.completed, s.rejected, s.workers), (2, 3, 0));
    assert_identities(&s);
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_queued_and_running_work() {
    let pool = Pool::builder()
        .limit(Limit::fixed(2))
        .queue_capacity(10)
        .build()
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    for i in 0..10u64 {
        let done = done.clone();
        // Detached: shutdown must drain them without anyone awaiting their handles.
        drop(
            pool.try_submit(async move {
                sleep(MS * (i as u32 + 1)).await;
                done.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap(),
        );
    }
    let report = pool.shutdown().await;
    assert_eq!(done.load(Ordering::SeqCst), 10);
    assert_eq!(
        (report.drained, report.cancelled, report.timed_out),
        (10, 0, false)
    );
    let s = pool.snapshot();
    assert_eq!((s.completed, s.running, s.queued, s.workers), (10, 0, 0, 0));
    assert_identities(&s);
}

#[tokio::test(start_paused = true)]
async fn concurrent_and_repeated_shutdowns_all_return_once_drained() {
    let pool = Pool::builder().limit(Limit::fixed(1)).build().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    drop(pool.try_submit(async move { rx.await.unwrap() }).unwrap());
    drop(pool.try_submit(async {}).unwrap());
    let mut a = task::spawn(pool.shutdown());
    let mut b = task::spawn(pool.shutdown());
    let mut c = task::spawn(pool.shutdown_timeout(Duration::from_secs(3600)));
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    assert_pending!(c.poll());
    tx.send(()).unwrap();
    // Let the workers drain.
    while pool.snapshot().completed < 2 {
        tokio::task::yield_now().await;
    }
    assert!(a.is_woken() && b.is_woken());
    let ra = assert_ready!(a.poll());
    let rb = assert_ready!(b.poll());
    let rc = assert_ready!(c.poll());
    assert_eq!(ra, rb);
    assert_eq!(ra, rc);
    assert_eq!(ra.drained, 2);
    // Later calls return at once, with the same report.
    assert_eq!(pool.shutdown().await, ra);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_shutdown_future_does_not_stop_the_drain() {
    let pool = Pool::builder().limit(Limit::fixed(1)).build().unwrap();
    let h = pool.try_submit(nap(10 * MS)).unwrap();
    let queued = pool.try_submit(async { 3 }).unwrap();
    let mut s = task::spawn(pool.shutdown());
    assert_pending!(s.poll());
    drop(s);
    assert!(pool.is_closed());
    h.await.unwrap();
    assert_eq!(queued.await.unwrap(), 3);
    assert_eq!(pool.shutdown().await.drained, 2);
}

#[tokio::test(start_paused = true)]
async fn shutdown_timeout_cancels_what_is_left_at_the_deadline_only() {
    let pool = Pool::builder()
        .limit(Limit::fixed(2))
        .queue_capacity(10)
        .build()
        .unwrap();
    let quick = pool.try_submit(nap(10 * MS)).unwrap();
    let stuck = pool.try_submit(std::future::pending::<()>()).unwrap();
    // Queued behind `stuck` and behind each other: the first runs after `quick`, the rest
    // wait behind a slot that never frees.
    let slow = pool.try_submit(nap(Duration::from_secs(60))).unwrap();
    let waiting: Vec<_> = (0..3).map(|_| pool.try_submit(async {}).unwrap()).collect();
    let mut shutdown = task::spawn(pool.shutdown_timeout(Duration::from_secs(1)));
    assert_pending!(shutdown.poll());
    sleep(Duration::from_secs(1) - MS).await;
    assert_pending!(shutdown.poll());
    assert_eq!(
        pool.snapshot().cancelled,
        0,
        "cancelled before the deadline"
    );
    sleep(2 * MS).await;
    // At the deadline it cancels; the running tasks end at their workers' next poll.
    let report = loop {
        if let std::task::Poll::Ready(report) = shutdown.poll() {
            break report;
        }
        tokio::task::yield_now().await;
    };
    assert!(report.timed_out);
    // quick drained; stuck, slow and the three waiting ones cancelled.
    assert_eq!((report.drained, report.cancelled), (1, 5), "{report:?}");
    quick.await.unwrap();
    assert!(stuck.await.unwrap_err().is_cancelled());
    assert!(slow.await.unwrap_err().is_cancelled());
    for w in waiting {
        assert!(w.await.unwrap_err().is_cancelled());
    }
    let s = pool.snapshot();
    assert_eq!(
        (s.completed, s.cancelled, s.running, s.queued),
        (1, 5, 0, 0)
    );
    assert_eq!(pool.limiter_stats().in_flight, 0);
    assert_identities(&s);
}

#[tokio::test(start_paused = true)]
async fn shutdown_timeout_that_drains_in_time_cancels_nothing() {
    let pool = Pool::builder().limit(Limit::fixed(1)).build().unwrap();
    for _ in 0..3 {
        drop(pool.try_submit(nap(10 * MS)).unwrap());
    }
    let report = pool.shutdown_timeout(Duration::from_secs(1)).await;
    assert_eq!(
        (report.drained, report.cancelled, report.timed_out),
        (3, 0, false)
    );
}

/// Submitters on plain threads race a shutdown on the runtime. Every offer ends in
/// exactly one place: accepted and run to completion, or handed back (Closed or Full).
#[test]
fn submits_racing_shutdown_are_run_or_handed_back() {
    const THREADS: usize = 4;
    const PER_THREAD: u64 = 2_000;
    for round in 0..5 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
        let pool = Pool::builder()
            .runtime(rt.handle().clone())
            .limit(Limit::fixed(4))
            .queue_capacity(16)
            .build()
            .unwrap();
        let ran = Arc::new(AtomicU64::new(0));
        let start = Arc::new(Barrier::new(THREADS + 1));
        let (halfway_tx, halfway) = std::sync::mpsc::channel::<()>();
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (pool, ran, start) = (pool.clone(), ran.clone(), start.clone());
                let halfway_tx = halfway_tx.clone();
                std::thread::spawn(move || {
                    let (mut handles, mut returned) = (Vec::new(), 0u64);
                    start.wait();
                    for i in 0..PER_THREAD {
                        if t == 0 && i == PER_THREAD / 2 {
                            let _ = halfway_tx.send(());
                        }
                        let ran = ran.clone();
                        match pool.try_submit(async move {
                            ran.fetch_add(1, Ordering::SeqCst);
                        }) {
                            Ok(h) => handles.push(h),
                            Err(e) => {
                                assert!(e.is_closed() || e.is_full());
                                // The future came back; it is ours to run or drop.
                                drop(e.into_inner());
                                returned += 1;
                            }
                        }
                    }
                    (handles, returned)
                })
            })
            .collect();
        start.wait();
        // Shut down while the submitters run: at the start, or once one is halfway.
        if round % 2 == 1 {
            halfway.recv().unwrap();
        }
        let report = rt.block_on(pool.shutdown());
        assert!(!report.timed_out);
        let (mut accepted, mut returned) = (0u64, 0u64);
        for t in threads {
            let (handles, r) = t.join().unwrap();
            returned += r;
            accepted += handles.len() as u64;
            for h in handles {
                rt.block_on(h).unwrap();
            }
        }
        let s = pool.snapshot();
        assert_eq!(accepted + returned, THREADS as u64 * PER_THREAD);
        assert_eq!((s.accepted, s.rejected), (accepted, returned), "{s:?}");
        assert_eq!(s.completed, accepted);
        assert_eq!(ran.load(Ordering::SeqCst), accepted);
        assert_eq!((s.running, s.queued, s.workers), (0, 0, 0));
        assert_identities(&s);
    }
}

/// Dropping the last `Pool` closes it without blocking: queued and running tasks still
/// finish (their handles resolve), then every worker ends: no task is left on the runtime.
#[tokio::test]
async fn dropping_the_last_pool_neither_blocks_nor_leaks() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let pool = Pool::builder()
        .limit(Limit::fixed(2))
        .min_workers(2)
        .build()
        .unwrap();
    let clone = pool.clone();
    let (go, gate) = watch::channel(false);
    let mut handles = Vec::new();
    for _ in 0..4 {
        let mut gate = gate.clone();
        handles.push(
            pool.try_submit(async move {
                let _ = gate.wait_for(|g| *g).await;
            })
            .unwrap(),
        );
    }
    drop(pool);
    assert!(!clone.is_closed(), "a clone keeps the pool open");
    // This single-threaded test would hang here if dropping waited for the tasks.
    drop(clone);
    go.send(true).unwrap();
    for h in handles {
        h.await.unwrap();
    }
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(metrics.num_alive_tasks(), 0, "workers outlived the pool");
}

/// An idle pool (only minimum workers, parked) is dropped: its workers end too.
#[tokio::test]
async fn dropping_an_idle_pool_ends_its_minimum_workers() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let pool = Pool::builder()
        .limit(Limit::fixed(3))
        .min_workers(3)
        .build()
        .unwrap();
    tokio::task::yield_now().await;
    assert_eq!(metrics.num_alive_tasks(), 3);
    drop(pool);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(metrics.num_alive_tasks(), 0);
}
