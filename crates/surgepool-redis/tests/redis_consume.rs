//! Push and consume; ack only after success; retry, then dead-letter after max_deliveries.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use surgepool::Limit;
use surgepool_redis::{Consumer, Job};

use support::*;

type Seen = Arc<Mutex<HashMap<String, Vec<u32>>>>;

fn record(seen: &Seen, job: &Job) {
    let key = String::from_utf8_lossy(job.payload()).into_owned();
    seen.lock()
        .unwrap()
        .entry(key)
        .or_default()
        .push(job.deliveries());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_consume_every_job_once() {
    let Some(server) = server("push_and_consume_every_job_once") else {
        return;
    };
    let queue = queue(&server, "emails").await;
    let payloads: Vec<String> = (0..500).map(|i| format!("job-{i}")).collect();
    let ids = queue
        .push_many(payloads.iter().map(|p| p.clone().into_bytes()))
        .await
        .unwrap();
    assert_eq!(ids.len(), 500);
    let one = queue.push(&b"job-500"[..]).await.unwrap();
    assert!(!ids.contains(&one));

    let seen: Seen = Arc::default();
    let s = seen.clone();
    let consumer = fast(Consumer::builder(queue.clone(), move |job: Job| {
        record(&s, &job);
        async { Ok::<(), String>(()) }
    }))
    .limit(Limit::adaptive())
    .build()
    .unwrap();
    let run = start(&consumer);
    wait_for("501 acks", || async { consumer.snapshot().acked == 501 }).await;
    let report = run.stop().await.unwrap();
    assert_eq!(report.handed_back, 0);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 501);
    assert!(
        seen.values().all(|d| d == &vec![1]),
        "every job ran once, on its first delivery"
    );
    let snap = consumer.snapshot();
    assert_eq!(snap.fetched, 501);
    assert!(
        (1..=501).contains(&snap.reads),
        "each read that got entries is counted once: {snap:?}"
    );
    assert_consumer_identity(&snap);
    let fleet = queue.fleet().await.unwrap();
    assert_eq!(
        (fleet.in_stream, fleet.pending),
        (0, 0),
        "acked entries are deleted"
    );
    assert_fleet_identity(&queue, snap.acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_only_after_success() {
    let Some(server) = server("ack_only_after_success") else {
        return;
    };
    let queue = queue(&server, "acks").await;
    queue
        .push_many((0..10).map(|i| format!("j{i}").into_bytes()))
        .await
        .unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(Mutex::new(0u32));
    let (g, st) = (gate.clone(), started.clone());
    let consumer = fast(Consumer::builder(queue.clone(), move |_job: Job| {
        let g = g.clone();
        *st.lock().unwrap() += 1;
        async move {
            let _ = g.acquire().await;
            Ok::<(), String>(())
        }
    }))
    .limit(Limit::fixed(10))
    .build()
    .unwrap();
    let run = start(&consumer);
    wait_for("10 running", || async { *started.lock().unwrap() == 10 }).await;

    // Running, not finished: nothing acked, every entry still pending in Redis.
    let fleet = queue.fleet().await.unwrap();
    assert_eq!((fleet.in_stream, fleet.pending), (10, 10));
    assert_eq!(consumer.snapshot().acked, 0);
    assert_eq!(consumer.snapshot().in_flight, 10);

    gate.add_permits(10_000);
    wait_for("10 acks", || async { consumer.snapshot().acked == 10 }).await;
    let fleet = queue.fleet().await.unwrap();
    assert_eq!((fleet.in_stream, fleet.pending), (0, 0));
    run.stop().await.unwrap();
    assert_consumer_identity(&consumer.snapshot());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_retry_with_backoff_then_dead_letter() {
    let Some(server) = server("failures_retry_with_backoff_then_dead_letter") else {
        return;
    };
    let queue = queue(&server, "retries").await;
    for p in ["poison", "flaky", "panics", "fine"] {
        queue.push(p.as_bytes().to_vec()).await.unwrap();
    }
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let consumer = fast(Consumer::builder(queue.clone(), move |job: Job| {
        record(&s, &job);
        let payload = job.payload().clone();
        async move {
            match (&payload[..], job.deliveries()) {
                (b"poison", _) => Err("always fails".to_owned()),
                (b"flaky", 1) => Err("fails once".to_owned()),
                (b"panics", 1) => panic!("boom"),
                _ => Ok(()),
            }
        }
    }))
    .max_deliveries(3)
    .build()
    .unwrap();
    let run = start(&consumer);
    wait_for("3 acks and 1 dead", || async {
        let s = consumer.snapshot();
        s.acked == 3 && s.dead == 1
    })
    .await;
    run.stop().await.unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen["poison"],
        vec![1, 2, 3],
        "poison: 3 deliveries, then dead"
    );
    assert_eq!(seen["flaky"], vec![1, 2]);
    assert_eq!(
        seen["panics"],
        vec![1, 2],
        "a panic is a failed run, retried"
    );
    assert_eq!(seen["fine"], vec![1]);
    let snap = consumer.snapshot();
    assert_eq!((snap.retried, snap.dead, snap.acked), (4, 1, 3));
    assert_consumer_identity(&snap);

    let dead = queue.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(&dead[0].0.payload()[..], b"poison");
    assert_eq!(dead[0].0.deliveries(), 3);
    assert_eq!(dead[0].1, "always fails");
    let fleet = queue.fleet().await.unwrap();
    assert_eq!((fleet.waiting(), fleet.dead), (0, 1));
    assert_fleet_identity(&queue, snap.acked).await;
}
