//! Leases: a dead consumer's jobs are reclaimed; a job that kills every worker it reaches is
//! dead-lettered; a slow live job renews its lease and is not stolen.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use surgepool::Limit;
use surgepool_redis::{Consumer, Job};

use support::*;

/// A consumer whose handler never finishes; returns its run task (abort it = the process died).
fn hang_forever(
    queue: &surgepool_redis::Queue,
    started: Arc<AtomicU32>,
) -> (Consumer, tokio::task::JoinHandle<()>) {
    let consumer = fast(Consumer::builder(queue.clone(), move |_job: Job| {
        started.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<Result<(), String>>()
    }))
    .limit(Limit::fixed(100))
    .build()
    .unwrap();
    let c = consumer.clone();
    let run = tokio::spawn(async move {
        let _ = c.run_until(std::future::pending()).await;
    });
    (consumer, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_consumers_jobs_are_reclaimed_after_the_lease() {
    let Some(server) = server("dead_consumers_jobs_are_reclaimed_after_the_lease") else {
        return;
    };
    let queue = queue(&server, "reclaim").await;
    queue
        .push_many((0..20).map(|i| format!("j{i}").into_bytes()))
        .await
        .unwrap();
    let started = Arc::new(AtomicU32::new(0));
    let (dying, run) = hang_forever(&queue, started.clone());
    wait_for("20 jobs held", || async {
        started.load(Ordering::SeqCst) == 20
    })
    .await;
    run.abort(); // no drain, no renewals: as if the process died
    let _ = run.await;
    assert_eq!(dying.snapshot().in_flight, 20);

    let deliveries = Arc::new(Mutex::new(Vec::new()));
    let d = deliveries.clone();
    let rescuer = fast(Consumer::builder(queue.clone(), move |job: Job| {
        d.lock().unwrap().push(job.deliveries());
        async { Ok::<(), String>(()) }
    }))
    .build()
    .unwrap();
    let task = start(&rescuer);
    wait_for("20 reclaimed and acked", || async {
        rescuer.snapshot().acked == 20
    })
    .await;
    task.stop().await.unwrap();

    let snap = rescuer.snapshot();
    assert_eq!(snap.reclaimed, 20);
    assert!(
        deliveries.lock().unwrap().iter().all(|d| *d == 2),
        "second delivery each"
    );
    assert_consumer_identity(&snap);
    let fleet = queue.fleet().await.unwrap();
    assert_eq!((fleet.in_stream, fleet.pending), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_kills_its_workers_is_dead_lettered() {
    let Some(server) = server("a_job_that_kills_its_workers_is_dead_lettered") else {
        return;
    };
    let queue = queue(&server, "poison").await;
    queue.push(&b"kills its worker"[..]).await.unwrap();
    // max_deliveries 2: two workers die running it; the third finds it delivered 3 times.
    for _ in 0..2 {
        let started = Arc::new(AtomicU32::new(0));
        let (_dying, run) = hang_forever(&queue, started.clone());
        wait_for("the job held", || async {
            started.load(Ordering::SeqCst) == 1
        })
        .await;
        run.abort();
        let _ = run.await;
    }
    let ran = Arc::new(AtomicU32::new(0));
    let r = ran.clone();
    let third = fast(Consumer::builder(queue.clone(), move |_job: Job| {
        r.fetch_add(1, Ordering::SeqCst);
        async { Ok::<(), String>(()) }
    }))
    .max_deliveries(2)
    .build()
    .unwrap();
    let task = start(&third);
    wait_for("dead-lettered", || async { third.snapshot().dead == 1 }).await;
    task.stop().await.unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 0, "never run a third time");
    let dead = queue.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0.deliveries(), 2);
    assert!(dead[0].1.contains("max_deliveries"), "{}", dead[0].1);
    assert_consumer_identity(&third.snapshot());
    let fleet = queue.fleet().await.unwrap();
    assert_eq!((fleet.waiting(), fleet.pending, fleet.dead), (0, 0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_live_job_renews_its_lease_and_is_not_stolen() {
    let Some(server) = server("a_slow_live_job_renews_its_lease_and_is_not_stolen") else {
        return;
    };
    let queue = queue(&server, "slow").await;
    queue.push(&b"slow"[..]).await.unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let make = |runs: Arc<AtomicU32>, release: Arc<tokio::sync::Semaphore>| {
        fast(Consumer::builder(queue.clone(), move |_job: Job| {
            runs.fetch_add(1, Ordering::SeqCst);
            let release = release.clone();
            async move {
                let _ = release.acquire().await;
                Ok::<(), String>(())
            }
        }))
        .lease_bounds(Duration::from_millis(300), Duration::from_secs(5))
        .build()
        .unwrap()
    };
    let a = make(runs.clone(), release.clone());
    let b = make(runs.clone(), release.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for c in [a.clone(), b.clone()] {
        let mut stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            c.run_until(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
        }));
    }
    wait_for("the job running", || async {
        runs.load(Ordering::SeqCst) == 1
    })
    .await;
    // Hold the job for 7 leases (300 ms: it runs no more, since p99 is still 0), observed
    // through the fleet view: it stays with its holder.
    let holder = if a.snapshot().in_flight == 1 {
        a.name().to_owned()
    } else {
        b.name().to_owned()
    };
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let fleet = queue.fleet().await.unwrap();
        assert_eq!(
            fleet.consumers,
            vec![(holder.clone(), 1)],
            "never reclaimed"
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "ran once");
    release.add_permits(10_000);
    wait_for("acked", || async {
        a.snapshot().acked + b.snapshot().acked == 1
    })
    .await;
    stop.send(true).unwrap();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(a.snapshot().reclaimed + b.snapshot().reclaimed, 0);
    assert_eq!(a.snapshot().stale + b.snapshot().stale, 0);
}
