//! The `metrics` feature: after a scripted workload, every published figure equals the
//! pool's own snapshot, exactly (a debugging recorder captures what a Prometheus exporter
//! would receive).

use std::collections::HashMap;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};
use surgepool::metrics::Publisher;
use surgepool::{limit::Limiter, BlockingPool, Limit, Pool, SubmitError};

type Captured = HashMap<(MetricKind, String, Vec<(String, String)>), DebugValue>;

fn capture(snapshotter: &Snapshotter) -> Captured {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(
            |(key, _unit, _description, value): (CompositeKey, _, _, _)| {
                let (kind, key) = key.into_parts();
                let mut labels: Vec<(String, String)> = key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                labels.sort();
                ((kind, key.name().to_owned(), labels), value)
            },
        )
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    v.sort();
    v
}

fn counter(c: &Captured, name: &str, l: &[(&str, &str)]) -> u64 {
    match c.get(&(MetricKind::Counter, name.to_owned(), labels(l))) {
        Some(DebugValue::Counter(v)) => *v,
        other => panic!("counter {name} {l:?}: {other:?}"),
    }
}

fn gauge(c: &Captured, name: &str, l: &[(&str, &str)]) -> f64 {
    match c.get(&(MetricKind::Gauge, name.to_owned(), labels(l))) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("gauge {name} {l:?}: {other:?}"),
    }
}

fn histogram_len(c: &Captured, name: &str, l: &[(&str, &str)]) -> usize {
    match c.get(&(MetricKind::Histogram, name.to_owned(), labels(l))) {
        Some(DebugValue::Histogram(v)) => v.len(),
        None => 0,
        other => panic!("histogram {name} {l:?}: {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn published_figures_equal_the_snapshot() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();

    // One slot and one queue place: the script decides every outcome.
    let pool = Pool::builder()
        .name("checkout")
        .limit(Limit::fixed(1))
        .queue_capacity(1)
        .build()
        .unwrap();
    let (release, gate) = tokio::sync::oneshot::channel::<()>();
    let held = pool
        .try_submit(async move {
            let _ = gate.await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            1
        })
        .unwrap();
    tokio::task::yield_now().await; // the first task starts and holds the slot
    let queued = pool.try_submit(async { panic!("boom") }).unwrap();
    let refused = pool.try_submit(async { 3 });
    assert!(matches!(refused, Err(SubmitError::Full(_))));

    let mut publisher = Publisher::new().pool(&pool);
    metrics::with_local_recorder(&recorder, || publisher.publish());
    let mid = capture(&snapshotter);
    let p = [("pool", "checkout")];
    assert_eq!(gauge(&mid, "surgepool_in_flight", &p), 1.0);
    assert_eq!(gauge(&mid, "surgepool_queued", &p), 1.0);
    assert_eq!(gauge(&mid, "surgepool_limit", &p), 1.0);
    assert_eq!(counter(&mid, "surgepool_tasks_submitted_total", &p), 3);
    assert_eq!(
        counter(
            &mid,
            "surgepool_shed_total",
            &[("pool", "checkout"), ("reason", "full")]
        ),
        1
    );

    release.send(()).unwrap();
    assert_eq!(held.await.unwrap(), 1);
    assert!(queued.await.unwrap_err().is_panic());
    pool.shutdown().await;

    metrics::with_local_recorder(&recorder, || publisher.publish());
    let end = capture(&snapshotter);
    let snap = pool.snapshot();
    let outcome = |o: &str| {
        counter(
            &end,
            "surgepool_tasks_total",
            &[("pool", "checkout"), ("outcome", o)],
        )
    };
    assert_eq!(outcome("accepted"), snap.accepted);
    assert_eq!(outcome("completed"), snap.completed);
    assert_eq!(outcome("panicked"), snap.panicked);
    assert_eq!(outcome("rejected"), snap.rejected);
    assert_eq!(outcome("cancelled"), snap.cancelled);
    assert_eq!(outcome("shed"), snap.shed);
    assert_eq!(
        (snap.accepted, snap.completed, snap.panicked, snap.rejected),
        (2, 1, 1, 1)
    );
    assert_eq!(gauge(&end, "surgepool_in_flight", &p), 0.0);
    assert_eq!(gauge(&end, "surgepool_queued", &p), 0.0);
    assert_eq!(gauge(&end, "surgepool_workers", &p), snap.workers as f64);
    // Both tasks ran: each latency histogram got exactly their two samples, across the two
    // publishes (each publish sends only what was recorded since the one before).
    let both = |name: &str| histogram_len(&mid, name, &p) + histogram_len(&end, name, &p);
    assert_eq!(both("surgepool_run_seconds") as u64, snap.run_time.count);
    assert_eq!(
        both("surgepool_end_to_end_seconds") as u64,
        snap.end_to_end.count
    );
    assert_eq!(
        both("surgepool_queue_wait_seconds") as u64,
        snap.queue_wait.count
    );
    assert_eq!(snap.run_time.count, 2);

    // A third publish with nothing new sends no new samples.
    metrics::with_local_recorder(&recorder, || publisher.publish());
    let again = capture(&snapshotter);
    assert_eq!(histogram_len(&again, "surgepool_run_seconds", &p), 0);
    assert_eq!(outcome("completed"), 1);
}

#[test]
fn blocking_pools_and_limiters_are_labelled_by_name() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let pool = BlockingPool::builder()
        .name("resize")
        .limit(Limit::fixed(2))
        .build()
        .unwrap();
    for i in 0..5u64 {
        pool.submit_timeout(move || i * 2, Duration::from_secs(60))
            .unwrap()
            .join()
            .unwrap();
    }
    pool.shutdown();
    let limiter = Limiter::new(Limit::fixed(8)).unwrap();
    let permit = limiter.try_acquire().unwrap();
    let mut publisher = Publisher::new()
        .blocking_pool(&pool)
        .limiter("upstream", &limiter);
    metrics::with_local_recorder(&recorder, || publisher.publish());
    let c = capture(&snapshotter);
    let r = [("pool", "resize")];
    assert_eq!(
        counter(
            &c,
            "surgepool_tasks_total",
            &[("pool", "resize"), ("outcome", "completed")]
        ),
        5
    );
    assert_eq!(gauge(&c, "surgepool_limit", &r), 2.0);
    assert_eq!(histogram_len(&c, "surgepool_run_seconds", &r), 5);
    let u = [("pool", "upstream")];
    assert_eq!(gauge(&c, "surgepool_limit", &u), 8.0);
    assert_eq!(gauge(&c, "surgepool_in_flight", &u), 1.0);
    drop(permit);
}

#[tokio::test(flavor = "current_thread")]
async fn a_batchers_items_and_flushes_are_published() {
    use surgepool::batch::Batcher;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let batcher: Batcher<u32, u32> = Batcher::builder(|xs: Vec<u32>| async move {
        if xs.contains(&13) {
            Err("unlucky")
        } else {
            Ok(xs)
        }
    })
    .build()
    .unwrap();
    let good = batcher.try_submit(1).unwrap();
    assert_eq!(good.await.unwrap(), 1);
    let bad = batcher.try_submit(13).unwrap();
    assert!(bad.await.is_err());
    batcher.shutdown().await;
    let mut publisher = Publisher::new().batcher("orders", &batcher);
    metrics::with_local_recorder(&recorder, || publisher.publish());
    let c = capture(&snapshotter);
    let s = batcher.snapshot();
    let items = |o: &str| {
        counter(
            &c,
            "surgepool_batch_items_total",
            &[("pool", "orders"), ("outcome", o)],
        )
    };
    assert_eq!((items("committed"), items("failed")), (1, 1));
    assert_eq!(items("accepted"), s.accepted);
    assert_eq!(
        counter(
            &c,
            "surgepool_batch_flushes_total",
            &[("pool", "orders"), ("outcome", "all")]
        ),
        s.flushes
    );
    assert_eq!(
        counter(
            &c,
            "surgepool_batch_flushes_total",
            &[("pool", "orders"), ("outcome", "failed")]
        ),
        s.failed_flushes
    );
    assert_eq!(gauge(&c, "surgepool_queued", &[("pool", "orders")]), 0.0);
}
