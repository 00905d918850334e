//! A backlog of 100,000 jobs pushed before any consumer starts is consumed (apalis-redis
//! fails past ~8,000 due jobs: its fetch script unpacks them all and hits Lua's limit).

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use surgepool_redis::{Consumer, Job};

use support::*;

const BACKLOG: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_100k_jobs_pushed_before_any_consumer_is_consumed() {
    let Some(server) = server("a_backlog_of_100k_jobs_pushed_before_any_consumer_is_consumed")
    else {
        return;
    };
    let queue = queue(&server, "backlog").await;
    let ids = queue
        .push_many((0..BACKLOG).map(|i| format!("{i}").into_bytes()))
        .await
        .unwrap();
    assert_eq!(ids.len(), BACKLOG);
    assert_eq!(queue.fleet().await.unwrap().in_stream, BACKLOG as u64);

    let ran = Arc::new(AtomicU64::new(0));
    let r = ran.clone();
    let consumer = fast(Consumer::builder(queue.clone(), move |_job: Job| {
        r.fetch_add(1, Ordering::Relaxed);
        async { Ok::<(), String>(()) }
    }))
    // A fixed limit: this test is about the backlog's size, not about adaptivity.
    .limit(surgepool::Limit::fixed(1000))
    .build()
    .unwrap();
    let run = start(&consumer);
    wait_for("the backlog consumed", || async {
        consumer.snapshot().acked == BACKLOG as u64
    })
    .await;
    run.stop().await.unwrap();
    assert_eq!(ran.load(Ordering::Relaxed), BACKLOG as u64);
    let fleet = queue.fleet().await.unwrap();
    assert_eq!((fleet.in_stream, fleet.pending), (0, 0));
    assert_consumer_identity(&consumer.snapshot());
}
