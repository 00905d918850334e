//! Bad input (issue 2, point 9): every wrong setting is a `BuildError` that names it, and no
//! public call panics on any argument (zero and huge values, `Duration::MAX` waits).

use std::time::Duration;

use surgepool::{Limit, Pool};
use tokio::time::Instant;

#[test]
fn outside_a_runtime_is_a_build_error_not_a_panic() {
    let err = Pool::builder().limit(Limit::fixed(1)).build().unwrap_err();
    assert_eq!(err.setting(), "runtime");
    assert!(err.to_string().contains("runtime"), "{err}");
}

#[test]
fn a_pool_built_with_an_explicit_runtime_works_from_a_plain_thread() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let pool = Pool::builder()
        .runtime(rt.handle().clone())
        .limit(Limit::fixed(2))
        .build()
        .unwrap();
    // Submitted from this thread, which is not a runtime thread.
    let handle = pool.try_submit(async { 7 }).unwrap();
    assert_eq!(rt.block_on(handle).unwrap(), 7);
    rt.block_on(pool.shutdown());
}

#[tokio::test]
async fn wrong_settings_name_themselves() {
    let cases = [
        (Pool::builder().limit(Limit::fixed(0)), "limit"),
        (
            Pool::builder().limit(Limit::fixed(2)).min_workers(3),
            "min_workers",
        ),
        (
            Pool::builder().codel_with(Duration::ZERO, Duration::from_millis(100)),
            "codel",
        ),
        (
            Pool::builder().codel_with(Duration::from_millis(5), Duration::ZERO),
            "codel",
        ),
        (Pool::builder().memory_budget(0), "memory_budget"),
    ];
    for (builder, setting) in cases {
        let err = builder.build().unwrap_err();
        assert_eq!(err.setting(), setting, "{err}");
        assert!(err.to_string().contains(setting), "{err}");
    }
}

#[tokio::test]
async fn min_workers_far_above_an_adaptive_limit_is_an_error_not_a_panic() {
    let err = Pool::builder()
        .limit(Limit::adaptive())
        .min_workers(usize::MAX)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "min_workers");
}

#[tokio::test]
async fn min_workers_equal_to_the_limit_is_fine() {
    let pool = Pool::builder()
        .limit(Limit::fixed(3))
        .min_workers(3)
        .build()
        .unwrap();
    assert_eq!(pool.snapshot().workers, 3);
    pool.shutdown().await;
    assert_eq!(pool.snapshot().workers, 0);
}

/// Every extreme value at once: the pool builds, runs, sheds, waits and shuts down.
#[tokio::test(start_paused = true)]
async fn huge_values_do_not_panic() {
    let pool = Pool::builder()
        .limit(Limit::fixed(usize::MAX))
        .queue_capacity(usize::MAX)
        .idle_timeout(Duration::MAX)
        .queue_timeout(Duration::MAX)
        .codel_with(Duration::MAX, Duration::MAX)
        .memory_budget(u64::MAX)
        .build()
        .unwrap();
    for _ in 0..3 {
        let h = pool.try_submit_weighted(async { 1 }, u64::MAX).unwrap();
        assert_eq!(h.await.unwrap(), 1);
        // A worker now idles with an idle timeout of Duration::MAX.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let far = Instant::now() + Duration::from_secs(1 << 40);
    assert_eq!(
        pool.try_submit_with_deadline(async { 2 }, far)
            .unwrap()
            .await
            .unwrap(),
        2
    );
    let h = pool
        .submit_timeout(async { 3 }, Duration::MAX)
        .await
        .unwrap();
    assert_eq!(h.await.unwrap(), 3);
    let report = pool.shutdown_timeout(Duration::MAX).await;
    assert!(!report.timed_out);
    let s = pool.snapshot();
    assert_eq!((s.completed, s.workers), (5, 0));
}

/// CoDel with huge settings on a queue that actually holds work: the control law must
/// not overflow while the pool's lock is held.
#[tokio::test(start_paused = true)]
async fn codel_with_huge_settings_on_a_standing_queue_does_not_panic() {
    let pool = Pool::builder()
        .limit(Limit::fixed(1))
        .codel_with(Duration::from_nanos(1), Duration::MAX)
        .build()
        .unwrap();
    let handles: Vec<_> = (0..20)
        .map(|_| {
            pool.try_submit(tokio::time::sleep(Duration::from_secs(1)))
                .unwrap()
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let pool = Pool::builder()
        .limit(Limit::fixed(1))
        .codel_with(Duration::MAX, Duration::from_nanos(1))
        .build()
        .unwrap();
    let handles: Vec<_> = (0..20)
        .map(|_| {
            pool.try_submit(tokio::time::sleep(Duration::from_secs(1)))
                .unwrap()
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn zero_durations_do_not_panic() {
    let pool = Pool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(0)
        .idle_timeout(Duration::ZERO)
        .queue_timeout(Duration::ZERO)
        .build()
        .unwrap();
    let busy = pool.try_submit(std::future::pending::<()>()).unwrap();
    let err = pool
        .submit_timeout(async {}, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    let past = Instant::now();
    tokio::time::advance(Duration::from_millis(1)).await;
    // A deadline already passed: a free slot still runs it (only queued tasks are shed).
    busy.abort();
    assert!(busy.await.unwrap_err().is_cancelled());
    pool.try_submit_with_deadline(async {}, past)
        .unwrap()
        .await
        .unwrap();
    let report = pool.shutdown_timeout(Duration::ZERO).await;
    assert!(!report.timed_out);
}
