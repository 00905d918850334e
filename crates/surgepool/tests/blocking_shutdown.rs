//! Shutdown (issue 2, points 5 and 8) on threads: `close` rejects with `Closed` and
//! accepted work goes on; `shutdown` blocks until every accepted closure finished, is
//! idempotent, and concurrent callers all return; submits racing a shutdown are
//! accepted-and-run or handed back; `shutdown_timeout` cancels what still waits in the
//! queue at the deadline (running closures cannot be interrupted: they finish in the
//! background, and are counted when they do).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use surgepool::{BlockingPool, Limit, SubmitError};

mod support;
use support::assert_identities;

/// A closure blocked until the returned sender is used; returns once it is running.
fn blocker(pool: &BlockingPool) -> (mpsc::Sender<()>, surgepool::BlockingHandle<()>) {
    let (tx, rx) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    let h = pool
        .try_submit(move || {
            started_tx.send(()).unwrap();
            rx.recv().unwrap()
        })
        .unwrap();
    started.recv().unwrap();
    (tx, h)
}

#[test]
fn close_rejects_new_work_but_accepted_work_goes_on() {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .build()
        .unwrap();
    let (tx, busy) = blocker(&pool);
    let queued = pool.try_submit(|| "queued").unwrap();
    pool.close();
    pool.close();
    assert!(pool.is_closed());
    match pool.try_submit(|| 9) {
        Err(SubmitError::Closed(f)) => assert_eq!(f(), 9),
        other => panic!("expected Closed, got {other:?}"),
    }
    tx.send(()).unwrap();
    busy.join().unwrap();
    assert_eq!(queued.join().unwrap(), "queued");
    let s = pool.snapshot();
    assert_eq!((s.completed, s.rejected), (2, 1));
    assert_identities(&s);
}

#[test]
fn shutdown_blocks_until_drained_and_concurrent_callers_all_return() {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(2))
        .build()
        .unwrap();
    let (tx, busy) = blocker(&pool);
    let done = Arc::new(AtomicU64::new(0));
    for _ in 0..5 {
        let done = done.clone();
        drop(
            pool.try_submit(move || {
                done.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap(),
        );
    }
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            std::thread::spawn(move || pool.shutdown())
        })
        .collect();
    // They cannot return while `busy` runs.
    for c in &callers {
        assert!(!c.is_finished());
    }
    tx.send(()).unwrap();
    busy.join().unwrap();
    let reports: Vec<_> = callers.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(reports.iter().all(|r| *r == reports[0]), "{reports:?}");
    assert!(!reports[0].timed_out);
    assert_eq!(done.load(Ordering::SeqCst), 5);
    assert_eq!(pool.shutdown(), reports[0], "idempotent");
    let s = pool.snapshot();
    assert_eq!((s.completed, s.running, s.queued, s.workers), (6, 0, 0, 0));
    assert_identities(&s);
}

#[test]
fn shutdown_timeout_cancels_the_queue_at_the_deadline_and_counts_late_finishers() {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(10)
        .build()
        .unwrap();
    let (tx, busy) = blocker(&pool);
    let queued: Vec<_> = (0..4)
        .map(|i| pool.try_submit(move || i).unwrap())
        .collect();
    let grace = Duration::from_millis(20);
    let t0 = Instant::now();
    let report = pool.shutdown_timeout(grace);
    assert!(t0.elapsed() >= grace, "returned before the grace period");
    assert!(report.timed_out);
    assert_eq!((report.cancelled, report.drained), (4, 0));
    for q in queued {
        assert!(q.join().unwrap_err().is_cancelled());
    }
    // The running closure was not interrupted: it finishes and is counted.
    let s = pool.snapshot();
    assert_eq!((s.running, s.cancelled), (1, 4));
    tx.send(()).unwrap();
    busy.join().unwrap();
    let report = pool.shutdown();
    assert_eq!((report.cancelled, report.drained), (4, 1));
    let s = pool.snapshot();
    assert_eq!((s.completed, s.cancelled, s.running), (1, 4, 0));
    assert_identities(&s);
}

#[test]
fn shutdown_timeout_that_drains_in_time_cancels_nothing() {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(2))
        .build()
        .unwrap();
    let (tx, busy) = blocker(&pool);
    for i in 0..5 {
        drop(pool.try_submit(move || i).unwrap());
    }
    let shutdown = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.shutdown_timeout(Duration::from_secs(120)))
    };
    // Release the blocker only once the shutdown began, so it is drained by it.
    while !pool.is_closed() {
        std::thread::yield_now();
    }
    tx.send(()).unwrap();
    busy.join().unwrap();
    let report = shutdown.join().unwrap();
    assert!(!report.timed_out);
    assert_eq!(report.cancelled, 0);
    // The blocker at least; the five quick ones too if they were still queued.
    assert!(report.drained >= 1);
    assert_eq!(pool.snapshot().completed, 6);
}

#[test]
fn submits_racing_shutdown_are_run_or_handed_back() {
    const THREADS: usize = 4;
    const PER_THREAD: u64 = 1_000;
    for round in 0..4 {
        let pool = BlockingPool::builder()
            .limit(Limit::fixed(2))
            .queue_capacity(8)
            .build()
            .unwrap();
        let ran = Arc::new(AtomicU64::new(0));
        let start = Arc::new(Barrier::new(THREADS + 1));
        let (halfway_tx, halfway) = mpsc::channel::<()>();
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (pool, ran, start) = (pool.clone(), ran.clone(), start.clone());
                let halfway_tx = halfway_tx.clone();
                std::thread::spawn(move || {
                    let (mut handles, mut back) = (Vec::new(), 0u64);
                    start.wait();
                    for i in 0..PER_THREAD {
                        if t == 0 && i == PER_THREAD / 2 {
                            let _ = halfway_tx.send(());
                        }
                        let ran = ran.clone();
                        let job = move || {
                            ran.fetch_add(1, Ordering::SeqCst);
                        };
                        let result = if i % 2 == 0 {
                            pool.try_submit(job)
                        } else {
                            pool.submit_timeout(job, Duration::from_secs(120))
                        };
                        match result {
                            Ok(h) => handles.push(h),
                            Err(e) => {
                                assert!(e.is_closed() || e.is_full(), "{e}");
                                drop(e.into_inner());
                                back += 1;
                            }
                        }
                    }
                    (handles, back)
                })
            })
            .collect();
        start.wait();
        if round % 2 == 1 {
            halfway.recv().unwrap();
        }
        let report = pool.shutdown();
        assert!(!report.timed_out);
        let (mut accepted, mut back) = (0u64, 0u64);
        for t in threads {
            let (handles, b) = t.join().unwrap();
            back += b;
            accepted += handles.len() as u64;
            for h in handles {
                h.join().unwrap();
            }
        }
        let s = pool.snapshot();
        assert_eq!(accepted + back, THREADS as u64 * PER_THREAD);
        assert_eq!(
            (s.accepted, s.rejected, s.completed),
            (accepted, back, accepted)
        );
        assert_eq!(ran.load(Ordering::SeqCst), accepted);
        assert_eq!((s.running, s.queued, s.workers), (0, 0, 0), "{s:?}");
        assert_identities(&s);
    }
}
