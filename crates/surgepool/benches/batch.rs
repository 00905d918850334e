//! The batcher's own cost per item: `Batcher::try_submit` of a burst, flushed by a flush
//! that does nothing (it hands the items back as outputs, so the flush body is excluded and
//! what is left is the batcher: queueing, batching, the flush task, per-item receipts and
//! accounting), against `Pool::try_spawn` of the same burst of empty tasks, in the same run,
//! on a multi-thread runtime with 2 workers.
//!
//! ```text
//! cargo bench -p surgepool --bench batch -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Shapes, each reported per item (criterion's throughput in elements):
//! * `pool_try_spawn`: `BURST` empty tasks, fire and forget; the last one to run signals.
//! * `batcher_receipts_dropped`: `BURST` items, receipts dropped (the outputs are dropped by
//!   the batcher); the flush that saw the last item signals.
//! * `batcher_receipts_awaited`: `BURST` items, then every receipt awaited.
//!
//! Goal of issue 12: the batcher's per-item cost is at most 2 × `pool_try_spawn`.
// `criterion_group!` generates undocumented public functions.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use surgepool::batch::Batcher;
use surgepool::{Limit, Pool};
use tokio::runtime::Runtime;
use tokio::sync::Notify;

const BURST: usize = 1_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Counts finished items; whoever finishes the last one wakes the waiter.
struct Countdown {
    left: AtomicUsize,
    done: Notify,
}

impl Countdown {
    fn new() -> Arc<Countdown> {
        Arc::new(Countdown {
            left: AtomicUsize::new(0),
            done: Notify::new(),
        })
    }
    fn arm(&self, n: usize) {
        self.left.store(n, Ordering::SeqCst);
    }
    fn finish(&self, n: usize) {
        if self.left.fetch_sub(n, Ordering::AcqRel) == n {
            self.done.notify_one();
        }
    }
}

fn burst(c: &mut Criterion) {
    let rt = runtime();
    let pool = rt.block_on(async {
        Pool::builder()
            .limit(Limit::fixed(64))
            .queue_capacity(BURST)
            .build()
            .expect("valid settings")
    });
    let countdown = Countdown::new();
    let seen = countdown.clone();
    let batcher: Batcher<u64, u64> = rt.block_on(async {
        Batcher::builder(move |items: Vec<u64>| {
            seen.finish(items.len());
            async move { Ok::<_, std::convert::Infallible>(items) }
        })
        .limit(Limit::fixed(2))
        .queue_capacity(BURST)
        .build()
        .expect("valid settings")
    });

    let mut group = c.benchmark_group("batch_burst");
    group.throughput(Throughput::Elements(BURST as u64));
    group.bench_function("pool_try_spawn", |b| {
        b.to_async(&rt).iter(|| async {
            countdown.arm(BURST);
            for _ in 0..BURST {
                let cd = countdown.clone();
                pool.try_spawn(async move { cd.finish(1) })
                    .unwrap_or_else(|_| panic!("room"));
            }
            countdown.done.notified().await;
        })
    });
    group.bench_function("batcher_receipts_dropped", |b| {
        b.to_async(&rt).iter(|| async {
            countdown.arm(BURST);
            for i in 0..BURST as u64 {
                drop(batcher.try_submit(i).expect("room"));
            }
            countdown.done.notified().await;
        })
    });
    group.bench_function("batcher_receipts_awaited", |b| {
        b.to_async(&rt).iter(|| async {
            countdown.arm(BURST);
            let receipts: Vec<_> = (0..BURST as u64)
                .map(|i| batcher.try_submit(i).expect("room"))
                .collect();
            for r in receipts {
                r.await.expect("committed");
            }
        })
    });
    group.finish();
}

criterion_group!(benches, burst);
criterion_main!(benches);
