//! Huge numbers at the pool's public calls (issue 10, item 4): weights whose sum would pass
//! `u64::MAX` are refused before the task is counted as accepted, and durations too long
//! to represent mean "never".

use std::future::pending;
use std::time::Duration;

use surgepool::{Limit, Pool};

mod support;
use support::assert_identities;

#[tokio::test]
async fn weights_that_would_overflow_are_refused_before_they_are_counted() {
    let pool = Pool::builder()
        .limit(Limit::fixed(4))
        .queue_capacity(4)
        .build()
        .unwrap();
    let huge = pool.try_submit_weighted(pending::<()>(), u64::MAX).unwrap();
    let err = pool.try_submit_weighted(async {}, 1).unwrap_err();
    assert!(err.is_full());
    // Weightless tasks still go in, and so do weighted ones once the huge one ends.
    pool.try_submit(async {}).unwrap().await.unwrap();
    let s = pool.snapshot();
    assert_eq!((s.submitted, s.accepted, s.rejected), (3, 2, 1), "{s:?}");
    assert_identities(&s);
    huge.abort();
    assert!(huge.await.unwrap_err().is_cancelled());
    let a = pool
        .try_submit_weighted(async {}, u64::MAX / 2 + 1)
        .unwrap();
    assert!(pool
        .try_submit_weighted(async {}, u64::MAX / 2 + 1)
        .unwrap_err()
        .is_full());
    a.await.unwrap();
    let s = pool.snapshot();
    assert_identities(&s);
    assert_eq!(s.rejected, 2);
}

#[tokio::test]
async fn a_budget_of_u64_max_admits_up_to_it_and_not_past() {
    let pool = Pool::builder()
        .memory_budget(u64::MAX)
        .limit(Limit::fixed(4))
        .build()
        .unwrap();
    let a = pool
        .try_submit_weighted(pending::<()>(), u64::MAX - 1)
        .unwrap();
    let b = pool.try_submit_weighted(pending::<()>(), 1).unwrap();
    assert!(pool.try_submit_weighted(async {}, 1).unwrap_err().is_full());
    a.abort();
    b.abort();
    let _ = (a.await, b.await);
    let report = pool.shutdown_timeout(Duration::MAX).await;
    assert!(!report.timed_out);
    assert_identities(&pool.snapshot());
}

#[tokio::test(start_paused = true)]
async fn huge_durations_mean_never() {
    let pool = Pool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(0)
        .idle_timeout(Duration::MAX)
        .queue_timeout(Duration::MAX)
        .build()
        .unwrap();
    let busy = pool.try_submit(pending::<()>()).unwrap();
    let waiting = {
        let pool = pool.clone();
        tokio::spawn(async move {
            pool.submit_timeout(async { 1 }, Duration::MAX)
                .await
                .map(drop)
        })
    };
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!waiting.is_finished());
    busy.abort();
    assert!(waiting.await.unwrap().is_ok());
    let report = pool.shutdown_timeout(Duration::MAX).await;
    assert!(!report.timed_out);
    assert_identities(&pool.snapshot());
}
