//! Overflow: local first, the stream when the pool is full, `Full` past the stream's bound;
//! the same handler on both paths.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use surgepool::{Limit, Pool};
use surgepool_redis::{Consumer, Job, Overflow, OverflowError, PushError, Queue, Routed, Source};
use tokio::sync::Semaphore;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_says_full_past_the_stream_bound_and_hands_the_payload_back() {
    let Some(server) = server("push_says_full_past_the_stream_bound") else {
        return;
    };
    let queue = Queue::builder(&server.url(), "bounded")
        .max_len(10)
        .connect()
        .await
        .unwrap();
    queue
        .push_many((0..9).map(|i| vec![i as u8]))
        .await
        .unwrap();
    match queue.push_many(vec![&b"a"[..], &b"b"[..]]).await {
        Err(e) => assert_eq!(e.into_inner().len(), 2, "both come back, none added"),
        Ok(_) => panic!("past the bound"),
    }
    queue.push(&b"tenth"[..]).await.unwrap();
    match queue.push(&b"eleventh"[..]).await {
        Err(PushError::Full(p)) => assert_eq!(&p[..], b"eleventh"),
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(queue.pushed(), 10);
    assert_eq!(queue.fleet().await.unwrap().in_stream, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_runs_locally_then_queues_then_sheds_at_the_bound() {
    let Some(server) = server("overflow_runs_locally_then_queues_then_sheds") else {
        return;
    };
    let queue = Queue::builder(&server.url(), "overflow")
        .max_len(5)
        .connect()
        .await
        .unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let ran = Arc::new(AtomicU32::new(0));
    let (g, r) = (gate.clone(), ran.clone());
    let handler = move |job: Job| {
        let (g, r) = (g.clone(), r.clone());
        async move {
            if job.source() == Source::Local {
                let _ = g.acquire().await;
            }
            r.fetch_add(1, Ordering::SeqCst);
            Ok::<(), String>(())
        }
    };
    let pool = Pool::builder()
        .limit(Limit::fixed(2))
        .queue_capacity(0)
        .build()
        .unwrap();
    let overflow = Overflow::new(pool, queue.clone(), handler.clone());

    let mut local = Vec::new();
    for _ in 0..2 {
        match overflow.submit(&b"x"[..]).await.unwrap() {
            Routed::Local(h) => local.push(h),
            Routed::Queued(_) => panic!("the pool has room"),
        }
    }
    for _ in 0..5 {
        assert!(matches!(
            overflow.submit(&b"y"[..]).await.unwrap(),
            Routed::Queued(_)
        ));
    }
    match overflow.submit(&b"z"[..]).await {
        Err(OverflowError::Full(p)) => assert_eq!(&p[..], b"z"),
        other => panic!("expected Full, got {other:?}"),
    }
    let stats = overflow.stats();
    assert_eq!((stats.local, stats.queued, stats.full), (2, 5, 1));
    assert_eq!(
        queue.fleet().await.unwrap().in_stream,
        5,
        "in Redis before submit returned"
    );

    gate.add_permits(100);
    for h in local {
        h.await.unwrap().unwrap();
    }
    let consumer = fast(Consumer::builder(queue.clone(), handler))
        .build()
        .unwrap();
    let run = start(&consumer);
    wait_for("the backlog drained", || async {
        consumer.snapshot().acked == 5
    })
    .await;
    run.stop().await.unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 7, "one handler, both paths");
    // Below the bound again: overflow queues once more.
    let hold = Arc::new(Semaphore::new(0));
    let h2 = hold.clone();
    let busy = Pool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(0)
        .build()
        .unwrap();
    let _blocker = busy
        .try_submit(async move {
            let _ = h2.acquire().await;
        })
        .unwrap();
    let again = Overflow::new(busy, queue.clone(), |_j: Job| async {
        Ok::<(), String>(())
    });
    assert!(matches!(
        again.submit(&b"w"[..]).await.unwrap(),
        Routed::Queued(_)
    ));
    hold.add_permits(1);
    assert_fleet_identity(&queue, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_never_blocks_forever_while_redis_is_down() {
    let Some(mut server) = server("overflow_never_blocks_forever_while_redis_is_down") else {
        return;
    };
    let queue = Queue::builder(&server.url(), "down")
        .op_timeout(Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    let pool = Pool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(0)
        .build()
        .unwrap();
    let hold = Arc::new(Semaphore::new(0));
    let h = hold.clone();
    let _busy = pool
        .try_submit(async move {
            let _ = h.acquire().await;
        })
        .unwrap();
    let handler = |_j: Job| async { Ok::<(), String>(()) };
    let errors = Overflow::new(pool.clone(), queue.clone(), handler);
    let sheds = Overflow::new(pool.clone(), queue.clone(), handler)
        .when_unavailable(surgepool_redis::WhenUnavailable::Shed);
    server.kill();
    // Bounded by the operation timeout (the outer timeout only catches a hang).
    let outcome = tokio::time::timeout(PATIENCE, errors.submit(&b"a"[..]))
        .await
        .expect("no hang");
    assert!(
        matches!(outcome, Err(OverflowError::Unavailable(..))),
        "{outcome:?}"
    );
    let first = tokio::time::timeout(PATIENCE, sheds.submit(&b"b"[..]))
        .await
        .expect("no hang");
    assert!(matches!(first, Err(OverflowError::Shed(_))), "{first:?}");
    let second = tokio::time::timeout(PATIENCE, sheds.submit(&b"c"[..]))
        .await
        .expect("no hang");
    assert!(
        matches!(second, Err(OverflowError::Shed(_))),
        "shed at once: {second:?}"
    );
    server.restart().unwrap();
    wait_for("redis back", || async { queue.fleet().await.is_ok() }).await;
    assert!(matches!(
        errors.submit(&b"d"[..]).await,
        Ok(Routed::Queued(_))
    ));
    hold.add_permits(1);
}
