//! Drain hands back unfinished jobs at once; trimming deletes acked entries and never drops
//! pending ones.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use surgepool::Limit;
use surgepool_redis::{Consumer, Job};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_hands_back_unfinished_jobs_at_once() {
    let Some(server) = server("drain_hands_back_unfinished_jobs_at_once") else {
        return;
    };
    let queue = queue(&server, "drain").await;
    queue
        .push_many((0..10).map(|i| format!("slow{i}").into_bytes()))
        .await
        .unwrap();
    queue
        .push_many((0..5).map(|i| format!("quick{i}").into_bytes()))
        .await
        .unwrap();
    let started = Arc::new(AtomicU32::new(0));
    let s = started.clone();
    let draining = fast(Consumer::builder(queue.clone(), move |job: Job| {
        s.fetch_add(1, Ordering::SeqCst);
        let slow = job.payload().starts_with(b"slow");
        async move {
            if slow {
                std::future::pending::<()>().await;
            }
            Ok::<(), String>(())
        }
    }))
    .limit(Limit::fixed(100))
    .drain_grace(Duration::from_millis(200))
    .build()
    .unwrap();
    let run = start(&draining);
    wait_for("15 started, 5 acked", || async {
        started.load(Ordering::SeqCst) == 15 && draining.snapshot().acked == 5
    })
    .await;
    let report = run.stop().await.unwrap();
    assert!(report.timed_out);
    assert_eq!(
        (report.cancelled, report.handed_back, report.left_pending),
        (10, 10, 0)
    );
    let snap = draining.snapshot();
    assert_eq!((snap.handed_back, snap.in_flight), (10, 0));
    assert_consumer_identity(&snap);
    let fleet = queue.fleet().await.unwrap();
    assert_eq!(
        (fleet.in_stream, fleet.pending),
        (10, 0),
        "back in the stream, unowned"
    );

    // A consumer whose lease could not have lapsed yet (1 h floor) takes them at once.
    let deliveries = Arc::new(std::sync::Mutex::new(Vec::new()));
    let dl = deliveries.clone();
    let next = Consumer::builder(queue.clone(), move |job: Job| {
        dl.lock()
            .unwrap()
            .push((job.id().to_owned(), job.deliveries()));
        async { Ok::<(), String>(()) }
    })
    .lease_bounds(Duration::from_secs(3600), Duration::from_secs(3600))
    .build()
    .unwrap();
    let run = start(&next);
    wait_for("10 acked elsewhere", || async {
        next.snapshot().acked == 10
    })
    .await;
    run.stop().await.unwrap();
    let all_first = deliveries.lock().unwrap().iter().all(|(_, d)| *d == 1);
    assert!(all_first, "the interrupted run is not held against it");
    assert_eq!(next.snapshot().reclaimed, 0);
    assert_fleet_identity(&queue, 15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_deletes_acked_entries_and_never_pending_ones() {
    let Some(server) = server("trimming_deletes_acked_entries_and_never_pending_ones") else {
        return;
    };
    let queue = queue(&server, "trim").await;
    let ids = queue
        .push_many((0..100).map(|i| format!("{i}").into_bytes()))
        .await
        .unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let held = Arc::new(AtomicU32::new(0));
    let (g, h) = (gate.clone(), held.clone());
    // Odd jobs wait at the gate (pending); even ones finish (acked, so deleted).
    let consumer = fast(Consumer::builder(queue.clone(), move |job: Job| {
        let n: u32 = std::str::from_utf8(job.payload()).unwrap().parse().unwrap();
        let g = g.clone();
        if n % 2 == 1 {
            h.fetch_add(1, Ordering::SeqCst);
        }
        async move {
            if n % 2 == 1 {
                let _ = g.acquire().await;
            }
            Ok::<(), String>(())
        }
    }))
    .limit(Limit::fixed(100))
    .build()
    .unwrap();
    let run = start(&consumer);
    wait_for("50 acked, 50 held", || async {
        consumer.snapshot().acked == 50 && held.load(Ordering::SeqCst) == 50
    })
    .await;
    // More pushes while work is pending: the stream is never trimmed by length.
    queue
        .push_many((100..150).map(|i| format!("{}", i * 2).into_bytes()))
        .await
        .unwrap();

    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let left: Vec<(String, redis::Value)> = redis::cmd("XRANGE")
        .arg("trim")
        .arg(&ids[0])
        .arg(&ids[99])
        .query_async(&mut conn)
        .await
        .unwrap();
    let left: Vec<&String> = left.iter().map(|(id, _)| id).collect();
    let odd: Vec<&String> = ids.iter().skip(1).step_by(2).collect();
    assert_eq!(left, odd, "exactly the pending (odd) entries remain");

    gate.add_permits(10_000);
    wait_for("150 acked", || async { consumer.snapshot().acked == 150 }).await;
    run.stop().await.unwrap();
    let len: u64 = redis::cmd("XLEN")
        .arg("trim")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 0);
    assert_fleet_identity(&queue, 150).await;
}
