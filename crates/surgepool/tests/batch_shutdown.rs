//! Shutdown flushes every accepted item within the grace period; what cannot be flushed is
//! cancelled and counted, never silently dropped.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use surgepool::batch::{BatchSnapshot, Batcher};
use surgepool::{Limit, SubmitError};

fn assert_identities(s: &BatchSnapshot) {
    assert_eq!(s.submitted, s.accepted + s.rejected, "{s:?}");
    assert_eq!(
        s.accepted,
        s.committed + s.failed + s.shed + s.cancelled + s.queued + s.in_flush,
        "{s:?}"
    );
}

fn slow(flush: Duration, limit: usize, max_batch: usize) -> Batcher<u32, u32> {
    Batcher::builder(move |items: Vec<u32>| async move {
        tokio::time::sleep(flush).await;
        Ok::<_, String>(items)
    })
    .limit(Limit::fixed(limit))
    .max_batch_size(max_batch)
    .build()
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn shutdown_flushes_every_accepted_item() {
    let batcher: Batcher<u32, u32> = Batcher::builder(|items: Vec<u32>| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<_, String>(items)
    })
    .limit(Limit::fixed(1))
    .max_batch_size(7)
    .queue_capacity(1000)
    .max_linger(Duration::from_secs(3600)) // only close flushes the last partial batch
    .build()
    .unwrap();
    let receipts: Vec<_> = (0..100).map(|i| batcher.try_submit(i).unwrap()).collect();
    let start = tokio::time::Instant::now();
    let report = batcher.shutdown().await;
    assert!(!report.timed_out);
    assert_eq!((report.drained, report.cancelled), (100, 0));
    // 15 batches of 7 (the last one 2), one at a time, none waiting for its linger.
    assert_eq!(start.elapsed(), Duration::from_millis(150));
    for (i, r) in receipts.into_iter().enumerate() {
        assert_eq!(r.await.unwrap(), i as u32);
    }
    let s = batcher.snapshot();
    assert_identities(&s);
    assert_eq!(
        (s.committed, s.queued, s.in_flush, s.flushes),
        (100, 0, 0, 15)
    );
    // Idempotent: a second shutdown finds nothing left.
    let again = batcher.shutdown().await;
    assert_eq!(
        (again.drained, again.cancelled, again.timed_out),
        (0, 0, false)
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_timeout_cancels_and_counts_the_rest_and_aborts_flushes() {
    let dropped = Arc::new(AtomicUsize::new(0));
    struct Flag(Arc<AtomicUsize>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let d = dropped.clone();
    let batcher = Batcher::builder(move |items: Vec<u32>| {
        let flag = Flag(d.clone());
        async move {
            let _flag = flag;
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok::<_, String>(items)
        }
    })
    .limit(Limit::fixed(2))
    .max_batch_size(10)
    .build()
    .unwrap();
    let receipts: Vec<_> = (0..55).map(|i| batcher.try_submit(i).unwrap()).collect();
    // Flushes: at 0 ms items 0 and 1, each alone (a flusher was free for each); at 400 ms
    // two batches of 10; at 500 ms the grace ends with those in flight and 33 queued.
    let report = batcher.shutdown_timeout(Duration::from_millis(500)).await;
    assert!(report.timed_out);
    assert_eq!(report.drained, 2);
    assert_eq!(report.cancelled, 53);
    tokio::task::yield_now().await;
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        4,
        "two flushes ended, two were aborted and dropped"
    );
    let mut committed = 0;
    for r in receipts {
        match r.await {
            Ok(_) => committed += 1,
            Err(e) => assert!(e.is_cancelled(), "{e:?}"),
        }
    }
    assert_eq!(committed, 2);
    let s = batcher.snapshot();
    assert_identities(&s);
    assert_eq!(
        (s.committed, s.cancelled, s.queued, s.in_flush),
        (2, 53, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_shutdowns_all_return_once_drained() {
    let batcher = slow(Duration::from_millis(50), 1, 5);
    let receipts: Vec<_> = (0..20).map(|i| batcher.try_submit(i).unwrap()).collect();
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let b = batcher.clone();
            tokio::spawn(async move { b.shutdown().await })
        })
        .collect();
    for c in callers {
        let report = c.await.unwrap();
        assert!(!report.timed_out);
        assert_eq!(report.drained, 20);
    }
    for r in receipts {
        r.await.unwrap();
    }
    assert_identities(&batcher.snapshot());
}

#[tokio::test(start_paused = true)]
async fn a_waiting_submit_gets_its_item_back_when_shutdown_begins() {
    let batcher: Batcher<u32, u32> = Batcher::builder(|items: Vec<u32>| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, String>(items)
    })
    .limit(Limit::fixed(1))
    .queue_capacity(1)
    .build()
    .unwrap();
    let _a = batcher.try_submit(1).unwrap();
    let _b = batcher.try_submit(2).unwrap();
    let b = batcher.clone();
    let waiting = tokio::spawn(async move { b.submit(3).await.map(|_| ()) });
    tokio::task::yield_now().await;
    let report = batcher.shutdown_timeout(Duration::ZERO).await;
    assert_eq!(report.cancelled, 2);
    match waiting.await.unwrap() {
        Err(SubmitError::Closed(item)) => assert_eq!(item, 3),
        other => panic!("expected Closed, got {other:?}"),
    }
    let s = batcher.snapshot();
    assert_identities(&s);
    assert_eq!((s.submitted, s.rejected, s.cancelled), (3, 1, 2));
}

#[test]
fn a_runtime_that_shuts_down_under_a_flush_cancels_its_items() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Arc::new(AtomicBool::new(false));
    let s2 = started.clone();
    let batcher = Batcher::builder(move |items: Vec<u32>| {
        s2.store(true, Ordering::SeqCst);
        async move {
            std::future::pending::<()>().await;
            Ok::<_, String>(items)
        }
    })
    .runtime(rt.handle().clone())
    .limit(Limit::fixed(1))
    .build()
    .unwrap();
    let receipts: Vec<_> = (0..3).map(|i| batcher.try_submit(i).unwrap()).collect();
    rt.block_on(tokio::task::yield_now());
    assert!(started.load(Ordering::SeqCst));
    drop(rt);
    let s = batcher.snapshot();
    assert_identities(&s);
    assert_eq!((s.cancelled, s.queued), (1, 2), "{s:?}");
    // The flushing item's receipt resolves; the queued two stay queued (counted), as no
    // runtime is left to flush them.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut receipts = receipts.into_iter();
    let first = receipts.next().unwrap();
    assert!(rt.block_on(first).unwrap_err().is_cancelled());
}
