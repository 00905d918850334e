//! Queue management: the pool's `queue_timeout`, a task's own deadline
//! (`try_submit_with_deadline`), CoDel, and the memory budget with
//! `try_submit_weighted`. A shed task never runs, its handle reports `is_shed`, and it is
//! counted once. Paused time makes every boundary exact.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use surgepool::{Limit, Pool, SubmitError};
use tokio::sync::oneshot;
use tokio::time::{sleep, Instant};

mod support;
use support::assert_identities;

const MS: Duration = Duration::from_millis(1);

async fn nap(d: Duration) {
    sleep(d).await
}

#[tokio::test(start_paused = true)]
async fn queue_timeout_sheds_only_what_waited_longer() {
    let pool = Pool::builder()
        .limit(Limit::fixed(1))
        .queue_timeout(50 * MS)
        .build()
        .unwrap();
    let first = pool.try_submit(nap(100 * MS)).unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    // Waits 100 ms > 50 ms: shed.
    let too_long = pool
        .try_submit(async move { r.store(true, Ordering::SeqCst) })
        .unwrap();
    sleep(50 * MS).await;
    // Waits exactly 50 ms: not longer than the timeout, runs.
    let exactly = pool.try_submit(async { "ran" }).unwrap();
    first.await.unwrap();
    assert!(too_long.await.unwrap_err().is_shed());
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(exactly.await.unwrap(), "ran");
    let s = pool.snapshot();
    assert_eq!((s.completed, s.shed), (2, 1));
    assert_identities(&s);
}

#[tokio::test(start_paused = true)]
async fn a_task_deadline_sheds_it_if_it_is_still_queued_then() {
    let pool = Pool::builder().limit(Limit::fixed(1)).build().unwrap();
    let t0 = Instant::now();
    let first = pool.try_submit(nap(100 * MS)).unwrap();
    let missed = pool
        .try_submit_with_deadline(async {}, t0 + 99 * MS)
        .unwrap();
    let at_the_line = pool
        .try_submit_with_deadline(async {}, t0 + 100 * MS)
        .unwrap();
    let in_time = pool
        .try_submit_with_deadline(async { 1 }, t0 + 101 * MS)
        .unwrap();
    first.await.unwrap();
    assert!(missed.await.unwrap_err().is_shed());
    // The deadline is the last instant it may still wait: reached means shed.
    let e = at_the_line.await.unwrap_err();
    assert!(e.is_shed());
    assert!(e.to_string().contains("deadline"), "{e}");
    assert_eq!(in_time.await.unwrap(), 1);
    assert_eq!(pool.snapshot().shed, 2);
}

/// A task that starts before its deadline is not affected by it.
#[tokio::test(start_paused = true)]
async fn a_deadline_does_not_cut_a_running_task() {
    let pool = Pool::builder().limit(Limit::fixed(1)).build().unwrap();
    let h = pool
        .try_submit_with_deadline(nap(100 * MS), Instant::now() + MS)
        .unwrap();
    h.await.unwrap();
    assert_eq!(pool.snapshot().completed, 1);
}

/// CoDel sheds a standing queue (delay above target for more than an interval), at a
/// rising rate, and never a burst that drains within one interval.
#[tokio::test(start_paused = true)]
async fn codel_sheds_a_standing_queue_but_not_a_short_burst() {
    // Burst: 8 tasks of 10 ms on one slot drain in 80 ms < 100 ms.
    let pool = Pool::builder()
        .limit(Limit::fixed(1))
        .codel()
        .build()
        .unwrap();
    let burst: Vec<_> = (0..8)
        .map(|_| pool.try_submit(nap(10 * MS)).unwrap())
        .collect();
    for h in burst {
        h.await.unwrap();
    }
    assert_eq!(pool.snapshot().shed, 0);

    // Standing queue: 100 tasks of 10 ms (a 1 s backlog).
    let pool = Pool::builder()
        .limit(Limit::fixed(1))
        .codel()
        .build()
        .unwrap();
    let handles: Vec<_> = (0..100)
        .map(|_| pool.try_submit(nap(10 * MS)).unwrap())
        .collect();
    let mut shed_at = Vec::new();
    let t0 = Instant::now();
    for h in handles {
        if let Err(e) = h.await {
            assert!(e.is_shed());
            assert!(e.to_string().contains("queue delay"), "{e}");
            shed_at.push(t0.elapsed());
        }
    }
    let s = pool.snapshot();
    assert_eq!(s.shed, shed_at.len() as u64);
    assert!(s.shed > 0, "a 1 s standing queue was never shed");
    assert!(s.completed >= 10, "CoDel shed everything: {s:?}");
    // Nothing is shed in the first interval (queue delay must stay above target for 100 ms).
    assert!(shed_at[0] >= 100 * MS, "{shed_at:?}");
    // Shedding made the backlog drain faster than 100 tasks x 10 ms.
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert_identities(&s);
}

#[tokio::test]
async fn the_memory_budget_bounds_declared_bytes_in_flight() {
    let pool = Pool::builder()
        .limit(Limit::fixed(8))
        .memory_budget(1_000)
        .build()
        .unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let a = pool
        .try_submit_weighted(
            async move {
                let _ = rx.await;
            },
            600,
        )
        .unwrap();
    match pool.try_submit_weighted(async { 1 }, 401) {
        Err(SubmitError::Full(fut)) => assert_eq!(fut.await, 1),
        other => panic!("expected Full, got {other:?}"),
    }
    // Exactly up to the budget is fine; weightless tasks always fit.
    let b = pool.try_submit_weighted(async {}, 400).unwrap();
    let c = pool.try_submit(async {}).unwrap();
    b.await.unwrap();
    c.await.unwrap();
    // b's 400 bytes came back when it ended.
    let d = pool.try_submit_weighted(async {}, 400).unwrap();
    d.await.unwrap();
    tx.send(()).unwrap();
    a.await.unwrap();
    let e = pool.try_submit_weighted(async {}, 1_000).unwrap();
    e.await.unwrap();
    assert!(pool
        .try_submit_weighted(async {}, 1_001)
        .unwrap_err()
        .is_full());
    let s = pool.snapshot();
    assert_eq!((s.completed, s.rejected), (5, 2));
    assert_identities(&s);
}

/// Bytes come back however a task ends: panic, abort while queued or running, shed.
#[tokio::test(start_paused = true)]
async fn the_budget_is_returned_on_every_outcome() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let pool = Pool::builder()
        .limit(Limit::fixed(1))
        .memory_budget(100)
        .queue_timeout(10 * MS)
        .build()
        .unwrap();
    let full = || async {};
    // Panic.
    let h = pool
        .try_submit_weighted(async { panic!("x") }, 100)
        .unwrap();
    assert!(h.await.unwrap_err().is_panic());
    // Abort while running.
    let h = pool
        .try_submit_weighted(std::future::pending::<()>(), 60)
        .unwrap();
    tokio::task::yield_now().await;
    // Abort while queued.
    let q = pool.try_submit_weighted(full(), 40).unwrap();
    assert!(pool.try_submit_weighted(full(), 1).unwrap_err().is_full());
    q.abort();
    h.abort();
    assert!(h.await.unwrap_err().is_cancelled());
    assert!(q.await.unwrap_err().is_cancelled());
    // Shed by the queue timeout.
    let running = pool.try_submit_weighted(nap(20 * MS), 50).unwrap();
    let shed = pool.try_submit_weighted(full(), 50).unwrap();
    running.await.unwrap();
    assert!(shed.await.unwrap_err().is_shed());
    // All 100 bytes are free again.
    pool.try_submit_weighted(full(), 100)
        .unwrap()
        .await
        .unwrap();
    std::panic::set_hook(prev);
    let s = pool.snapshot();
    assert_eq!(
        (s.completed, s.panicked, s.cancelled, s.shed, s.rejected),
        (2, 1, 2, 1, 1)
    );
    assert_identities(&s);
}
