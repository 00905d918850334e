//! The fetch asks Redis for what the stream holds, not for every free permit: an adaptive
//! consumer fed a trickle of jobs keeps its limit near its real demand.
//!
//! Regression: the fetch used to take every free permit and hold them through its blocking
//! read. A job finishing meanwhile reported the limit as used up (and each failed
//! `try_acquire` counted as a refused caller), so the limit climbed with no demand behind
//! it: 2048 with 11 jobs running in the lab's `fleet`, and when the downstream slowed, the
//! next reads took hundreds of jobs at once.

mod support;

use std::time::Duration;

use surgepool::Limit;
use surgepool_redis::{Consumer, Job};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickle_of_jobs_does_not_grow_the_adaptive_limit() {
    let Some(server) = server("a_trickle_of_jobs_does_not_grow_the_adaptive_limit") else {
        return;
    };
    let queue = queue(&server, "trickle").await;
    let consumer = fast(Consumer::builder(queue.clone(), |_job: Job| async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok::<(), String>(())
    }))
    .limit(Limit::adaptive())
    .build()
    .unwrap();
    let run = start(&consumer);
    // One job at a time: the demand is one slot, whatever the timing.
    const JOBS: u64 = 400;
    let mut highest = 0;
    for i in 0..JOBS {
        queue.push(format!("job-{i}").into_bytes()).await.unwrap();
        wait_for("the job's ack", || async {
            consumer.snapshot().acked == i + 1
        })
        .await;
        highest = highest.max(consumer.snapshot().limit);
    }
    run.stop().await.unwrap();
    let snap = consumer.snapshot();
    assert_eq!(snap.acked, JOBS);
    assert_consumer_identity(&snap);
    // One job in flight, plus at most two permits held by the fetch (twice the last read),
    // binds a limit of 3 or 4 at most; the climber then grows it by a step or two at most.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let bound = 16.max(cores * 2);
    assert!(
        highest <= bound,
        "the limit reached {highest} with one job at a time (bound {bound})"
    );
}
