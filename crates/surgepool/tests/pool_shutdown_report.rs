//! Shutdown reports are remembered (issue 10, item 6): every shutdown call that returns
//! after the drain gets the same report, and a grace deadline that passed before the drain
//! ended shows as `timed_out` in all of them.

use std::future::pending;
use std::time::Duration;

use surgepool::{Limit, Pool};

mod support;
use support::assert_identities;

#[tokio::test(start_paused = true)]
async fn a_shutdown_after_a_timed_out_one_reports_the_same() {
    let pool = Pool::builder()
        .limit(Limit::fixed(2))
        .queue_capacity(4)
        .build()
        .unwrap();
    let done = pool.try_submit(async { 1 }).unwrap();
    assert_eq!(done.await.unwrap(), 1);
    let running = pool.try_submit(pending::<()>()).unwrap();
    let first = pool.shutdown_timeout(Duration::from_millis(10)).await;
    assert!(first.timed_out);
    assert_eq!(first.cancelled, 1);
    assert!(running.await.unwrap_err().is_cancelled());
    let later = pool.shutdown().await;
    assert_eq!(later, first);
    let in_time = pool.shutdown_timeout(Duration::from_secs(5)).await;
    assert_eq!(in_time, first);
    assert_identities(&pool.snapshot());
}

#[tokio::test(start_paused = true)]
async fn concurrent_shutdowns_get_the_same_report() {
    let pool = Pool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(4)
        .build()
        .unwrap();
    let _running = pool.try_submit(pending::<()>()).unwrap();
    let _queued = pool.try_submit(pending::<()>()).unwrap();
    let (short, long, plain) = tokio::join!(
        pool.shutdown_timeout(Duration::from_millis(10)),
        pool.shutdown_timeout(Duration::from_secs(3600)),
        pool.shutdown(),
    );
    assert!(short.timed_out);
    assert_eq!(short.cancelled, 2);
    assert_eq!(long, short);
    assert_eq!(plain, short);
}

#[tokio::test(start_paused = true)]
async fn a_drain_that_ends_in_time_is_not_timed_out() {
    let pool = Pool::builder().limit(Limit::fixed(1)).build().unwrap();
    let slow = pool
        .try_submit(tokio::time::sleep(Duration::from_millis(5)))
        .unwrap();
    let (a, b) = tokio::join!(
        pool.shutdown_timeout(Duration::from_secs(1)),
        pool.shutdown()
    );
    assert!(!a.timed_out);
    assert_eq!(a, b);
    assert_eq!(a.drained, 1);
    assert!(slow.is_finished());
}
