//! Workers (issue 2, point 4): they start on demand up to the limit, and a task that gets
//! a slot gets a worker at once (no polling tick: paused time never has to move); never
//! fewer than `min_workers`; idle workers above the minimum exit after `idle_timeout`.

use std::time::Duration;

use surgepool::{Limit, Pool};
use tokio::sync::watch;
use tokio::time::{sleep, Instant};

const IDLE: Duration = Duration::from_secs(10);
const MS: Duration = Duration::from_millis(1);

/// `n` tasks that run until the returned sender says go.
fn hold(pool: &Pool, n: usize) -> (watch::Sender<bool>, Vec<surgepool::TaskHandle<()>>) {
    let (go, gate) = watch::channel(false);
    let handles = (0..n)
        .map(|_| {
            let mut gate = gate.clone();
            pool.try_submit(async move {
                let _ = gate.wait_for(|g| *g).await;
            })
            .unwrap()
        })
        .collect();
    (go, handles)
}

async fn release(go: watch::Sender<bool>, handles: Vec<surgepool::TaskHandle<()>>) {
    go.send(true).unwrap();
    for h in handles {
        h.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn workers_start_on_demand_up_to_the_limit() {
    let pool = Pool::builder()
        .limit(Limit::fixed(4))
        .queue_capacity(10)
        .idle_timeout(IDLE)
        .build()
        .unwrap();
    assert_eq!(pool.snapshot().workers, 0);
    let (go, handles) = hold(&pool, 2);
    assert_eq!(pool.snapshot().workers, 2);
    let (go2, more) = hold(&pool, 6);
    // Four slots, four workers; the other four tasks queue and start no worker.
    let s = pool.snapshot();
    assert_eq!((s.workers, s.running, s.queued), (4, 4, 4));
    release(go, handles).await;
    release(go2, more).await;
    assert_eq!(pool.snapshot().workers, 4);
}

/// The moment a slot frees, the next queued task runs, with the clock standing still.
#[tokio::test(start_paused = true)]
async fn a_queued_task_starts_without_any_tick() {
    let pool = Pool::builder()
        .limit(Limit::fixed(1))
        .idle_timeout(IDLE)
        .build()
        .unwrap();
    let t0 = Instant::now();
    let (go, first) = hold(&pool, 1);
    let queued = pool.try_submit(async { Instant::now() }).unwrap();
    release(go, first).await;
    assert_eq!(queued.await.unwrap(), t0);
    assert_eq!(Instant::now(), t0);
}

/// A task that gets a slot while every worker is busy gets a new worker at once.
#[tokio::test(start_paused = true)]
async fn a_new_worker_starts_at_once_while_under_the_limit() {
    let pool = Pool::builder()
        .limit(Limit::fixed(3))
        .idle_timeout(IDLE)
        .build()
        .unwrap();
    let t0 = Instant::now();
    let (go, busy) = hold(&pool, 2);
    let h = pool.try_submit(async { Instant::now() }).unwrap();
    assert_eq!(h.await.unwrap(), t0);
    assert_eq!(pool.snapshot().workers, 3);
    release(go, busy).await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_worker_is_reused_instead_of_starting_another() {
    let pool = Pool::builder()
        .limit(Limit::fixed(8))
        .idle_timeout(IDLE)
        .build()
        .unwrap();
    for _ in 0..100 {
        pool.try_submit(async {}).unwrap().await.unwrap();
    }
    assert_eq!(pool.snapshot().workers, 1);
}

#[tokio::test(start_paused = true)]
async fn idle_workers_above_the_minimum_retire_after_exactly_the_idle_timeout() {
    let pool = Pool::builder()
        .limit(Limit::fixed(5))
        .min_workers(2)
        .idle_timeout(IDLE)
        .build()
        .unwrap();
    // The minimum exists from `build` on, before any task.
    assert_eq!(pool.snapshot().workers, 2);
    let (go, handles) = hold(&pool, 5);
    assert_eq!(pool.snapshot().workers, 5);
    release(go, handles).await;
    sleep(IDLE - MS).await;
    assert_eq!(
        pool.snapshot().workers,
        5,
        "retired before the idle timeout"
    );
    sleep(2 * MS).await;
    assert_eq!(
        pool.snapshot().workers,
        2,
        "not retired at the idle timeout"
    );
    // The minimum stays, however long the pool idles.
    for _ in 0..10 {
        sleep(IDLE * 10).await;
        assert_eq!(pool.snapshot().workers, 2);
    }
    // And still serves.
    pool.try_submit(async {}).unwrap().await.unwrap();
    assert_eq!(pool.snapshot().workers, 2);
}

/// Work that arrives during the idle period resets the worker's clock.
#[tokio::test(start_paused = true)]
async fn work_during_the_idle_period_keeps_the_worker() {
    let pool = Pool::builder()
        .limit(Limit::fixed(1))
        .idle_timeout(IDLE)
        .build()
        .unwrap();
    pool.try_submit(async {}).unwrap().await.unwrap();
    for _ in 0..5 {
        sleep(IDLE - MS).await;
        pool.try_submit(async {}).unwrap().await.unwrap();
        assert_eq!(pool.snapshot().workers, 1);
    }
    sleep(IDLE + MS).await;
    assert_eq!(pool.snapshot().workers, 0);
    // A retired pool starts a worker again on demand.
    pool.try_submit(async {}).unwrap().await.unwrap();
    assert_eq!(pool.snapshot().workers, 1);
}

/// Workers retire and start again under churn, on two threads, with an idle timeout of
/// zero (the most retirements possible): no snapshot ever shows fewer than the minimum,
/// and never more than the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minimum_never_dips_under_churn() {
    let pool = Pool::builder()
        .limit(Limit::fixed(4))
        .min_workers(2)
        .queue_capacity(64)
        .idle_timeout(Duration::ZERO)
        .build()
        .unwrap();
    let submitters: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for i in 0..1_000u32 {
                    if let Ok(h) = pool.try_submit(async move {
                        if i % 2 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }) {
                        if i % 7 == 0 {
                            h.await.unwrap();
                        }
                    }
                    let s = pool.snapshot();
                    assert!((2..=4).contains(&s.workers), "{s:?}");
                    if i % 5 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for s in submitters {
        s.await.unwrap();
    }
    pool.shutdown().await;
    assert_eq!(pool.snapshot().workers, 0);
}

/// A worker that held its thread for a millisecond with one task yields before it runs the
/// next queued one, so that the runtime's other tasks run in between. (It counted the hold
/// from the second task on: with 20 ms CPU-bound tasks, it ran two before it yielded, and
/// with three slots on two threads the third task waited behind two others, 60 ms.)
#[tokio::test]
async fn a_worker_yields_after_one_task_that_held_its_thread_for_a_millisecond() {
    let pool = Pool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(4)
        .build()
        .unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let l = log.clone();
    let first = pool
        .try_submit(async move {
            // Blocks the thread, as CPU-bound work does (it never returns early).
            std::thread::sleep(2 * MS);
            l.lock().unwrap().push("first");
        })
        .unwrap();
    let l = log.clone();
    let second = pool
        .try_submit(async move { l.lock().unwrap().push("second") })
        .unwrap();
    let l = log.clone();
    let other = tokio::spawn(async move { l.lock().unwrap().push("other") });
    first.await.unwrap();
    second.await.unwrap();
    other.await.unwrap();
    assert_eq!(*log.lock().unwrap(), ["first", "other", "second"]);
}
