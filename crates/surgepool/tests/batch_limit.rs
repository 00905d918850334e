//! Flush concurrency: never above the limit, and batches adapt to the load (smart batching)
//! and to the linger.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use surgepool::batch::{BatchSnapshot, Batcher};
use surgepool::Limit;

fn assert_identities(s: &BatchSnapshot) {
    assert_eq!(s.submitted, s.accepted + s.rejected, "{s:?}");
    assert_eq!(
        s.accepted,
        s.committed + s.failed + s.shed + s.cancelled + s.queued + s.in_flush,
        "{s:?}"
    );
}

/// Counts flushes running at once and the most ever seen.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }
    fn exit(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

fn timed(gauge: Arc<Gauge>, limit: Limit, max_batch: usize) -> Batcher<u64, u64> {
    Batcher::builder(move |items: Vec<u64>| {
        let gauge = gauge.clone();
        async move {
            gauge.enter();
            // A flush costs 5 ms plus 10 µs per row: a commit and the rows' work.
            let cost = Duration::from_millis(5) + Duration::from_micros(10 * items.len() as u64);
            tokio::time::sleep(cost).await;
            gauge.exit();
            Ok::<_, String>(items)
        }
    })
    .limit(limit)
    .max_batch_size(max_batch)
    .queue_capacity(1_000_000)
    .build()
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn flushes_never_exceed_a_fixed_limit() {
    let gauge = Arc::new(Gauge::default());
    let batcher = timed(gauge.clone(), Limit::fixed(3), 10);
    let mut receipts = Vec::new();
    for i in 0..2_000 {
        receipts.push(batcher.try_submit(i).unwrap());
        if i % 7 == 0 {
            tokio::time::sleep(Duration::from_micros(300)).await;
            let s = batcher.snapshot();
            assert!(s.flushes_running <= 3, "{s:?}");
            assert_identities(&s);
        }
    }
    for r in receipts {
        r.await.unwrap();
    }
    assert_eq!(gauge.peak.load(Ordering::SeqCst), 3);
    let s = batcher.snapshot();
    assert_eq!(s.committed, 2_000);
    assert_eq!(s.batch_size.max, 10);
}

#[tokio::test(start_paused = true)]
async fn flushes_never_exceed_an_adaptive_limit() {
    let gauge = Arc::new(Gauge::default());
    let limit = Limit::adaptive_builder()
        .min(1)
        .initial(2)
        .max(4)
        .build()
        .unwrap();
    let batcher = timed(gauge.clone(), limit, 50);
    let mut receipts = Vec::new();
    for i in 0..20_000 {
        receipts.push(batcher.try_submit(i).unwrap());
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
    }
    for r in receipts {
        r.await.unwrap();
    }
    let peak = gauge.peak.load(Ordering::SeqCst);
    assert!((1..=4).contains(&peak), "peak {peak}");
    assert_identities(&batcher.snapshot());
}

#[tokio::test(start_paused = true)]
async fn light_load_flushes_each_item_alone_and_at_once() {
    let gauge = Arc::new(Gauge::default());
    let batcher = timed(gauge, Limit::adaptive(), 1000);
    let alone = {
        let start = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_micros(5_010)).await;
        start.elapsed() // the timer's millisecond rounding included
    };
    for i in 0..50 {
        let accepted = tokio::time::Instant::now();
        batcher.try_submit(i).unwrap().await.unwrap();
        // One flush of one row, nothing waited for: exactly the flush's own cost.
        assert_eq!(accepted.elapsed(), alone);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = batcher.snapshot();
    assert_eq!((s.flushes, s.batch_size.max), (50, 1));
}

#[tokio::test(start_paused = true)]
async fn heavy_load_grows_batches_to_carry_the_arrival_rate() {
    let gauge = Arc::new(Gauge::default());
    let batcher = timed(gauge, Limit::fixed(1), 1000);
    // 50 000 rows/s for 1 s, against one flusher: one row alone would take 5 ms (200
    // rows/s); a batch of k rows takes 5 ms + k × 10 µs, during which 50 k/ms arrive, so
    // the batch settles where k = 50 × (5 + k / 100): 500 rows in 10 ms.
    let mut receipts = Vec::new();
    for i in 0..50_000u64 {
        receipts.push(batcher.try_submit(i).unwrap());
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    for r in receipts {
        r.await.unwrap();
    }
    let s = batcher.snapshot();
    assert_eq!(s.committed, 50_000);
    assert!(s.batch_size.mean > 300.0, "{:?}", s.batch_size);
    assert!(s.batch_size.max <= 1000);
    // The queue waits at most one flush, then rides the next: an item's latency stays
    // within about two flushes of ~10 ms, not seconds.
    assert!(
        s.item_latency.p99 <= Duration::from_millis(25),
        "{:?}",
        s.item_latency
    );
}

#[tokio::test(start_paused = true)]
async fn a_linger_gathers_items_and_a_full_batch_does_not_wait() {
    let batcher: Batcher<u64, u64> =
        Batcher::builder(|items: Vec<u64>| async move { Ok::<_, String>(items) })
            .max_linger(Duration::from_millis(20))
            .max_batch_size(4)
            .build()
            .unwrap();
    let start = tokio::time::Instant::now();
    let a = batcher.try_submit(1).unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let b = batcher.try_submit(2).unwrap();
    assert_eq!(a.await.unwrap(), 1);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(20),
        "the oldest waited its linger"
    );
    assert_eq!(b.await.unwrap(), 2);
    assert_eq!(batcher.snapshot().batch_size.max, 2);

    let start = tokio::time::Instant::now();
    let full: Vec<_> = (0..4).map(|i| batcher.try_submit(i).unwrap()).collect();
    for r in full {
        r.await.unwrap();
    }
    assert_eq!(start.elapsed(), Duration::ZERO, "a full batch goes at once");
    let s = batcher.snapshot();
    assert_eq!((s.flushes, s.batch_size.max), (2, 4));
}
