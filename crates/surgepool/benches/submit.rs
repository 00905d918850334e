//! `try_submit` + completion for `Pool` and `BlockingPool`, against `tokio::spawn` (and
//! `spawn_blocking`) measured in the same run, on a multi-thread runtime with 2 workers.
//!
//! ```text
//! cargo bench -p surgepool --bench submit -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Two shapes:
//! * `round_trip`: submit one empty task and wait for its result (await the handle, or
//!   `join` for the blocking pool): the latency of one hand-off and back.
//! * `burst`: submit `BURST` empty tasks without waiting (handles dropped: fire and
//!   forget), then wait until all have run (the last one to finish signals). Reported per
//!   task (criterion's throughput in elements), so it measures the submit path's cost when
//!   the pool is busy. `blocking_try_spawn` is the same burst through the detached path
//!   (no handle at all) beside `blocking_try_submit` (a handle, dropped).
//!
//! The pools use a fixed limit (64 for `Pool`, 2 for `BlockingPool`: one thread per core)
//! and a queue large enough for a whole burst, so nothing is rejected.
// `criterion_group!` generates undocumented public functions.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use surgepool::{BlockingPool, Limit, Pool};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

const BURST: usize = 1_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Counts finished tasks; the last of a burst sends the signal.
struct Countdown {
    left: AtomicUsize,
}

impl Countdown {
    fn new(n: usize) -> Arc<Countdown> {
        Arc::new(Countdown {
            left: AtomicUsize::new(n),
        })
    }
    /// `true` for the last one.
    fn done(&self) -> bool {
        self.left.fetch_sub(1, Ordering::AcqRel) == 1
    }
}

fn round_trip(c: &mut Criterion) {
    let rt = runtime();
    let pool = rt.block_on(async {
        Pool::builder()
            .limit(Limit::fixed(64))
            .queue_capacity(BURST)
            .build()
            .expect("valid settings")
    });
    let blocking = BlockingPool::builder()
        .limit(Limit::fixed(2))
        .queue_capacity(BURST)
        .build()
        .expect("valid settings");
    let mut group = c.benchmark_group("round_trip");
    group.throughput(Throughput::Elements(1));
    group.bench_function("tokio_spawn", |b| {
        b.to_async(&rt)
            .iter(|| async { tokio::spawn(async {}).await.expect("no panic") })
    });
    group.bench_function("pool_try_submit", |b| {
        b.to_async(&rt).iter(|| async {
            pool.try_submit(async {})
                .expect("room")
                .await
                .expect("no panic")
        })
    });
    group.bench_function("tokio_spawn_blocking", |b| {
        b.to_async(&rt)
            .iter(|| async { tokio::task::spawn_blocking(|| {}).await.expect("no panic") })
    });
    group.bench_function("blocking_try_submit_join", |b| {
        b.iter(|| {
            blocking
                .try_submit(|| {})
                .expect("room")
                .join()
                .expect("no panic")
        })
    });
    group.finish();
    rt.block_on(pool.shutdown());
    blocking.shutdown();
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
    let blocking = BlockingPool::builder()
        .limit(Limit::fixed(2))
        .queue_capacity(BURST)
        .build()
        .expect("valid settings");
    let mut group = c.benchmark_group("burst");
    group.throughput(Throughput::Elements(BURST as u64));
    group.bench_function(BenchmarkId::new("tokio_spawn", BURST), |b| {
        b.to_async(&rt).iter(|| async {
            let (tx, rx) = oneshot::channel();
            let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
            let left = Countdown::new(BURST);
            for _ in 0..BURST {
                let (left, tx) = (left.clone(), tx.clone());
                drop(tokio::spawn(async move {
                    if left.done() {
                        let _ = tx.lock().expect("unpoisoned").take().map(|t| t.send(()));
                    }
                }));
            }
            rx.await.expect("the last task signals");
        })
    });
    group.bench_function(BenchmarkId::new("pool_try_submit", BURST), |b| {
        b.to_async(&rt).iter(|| async {
            let (tx, rx) = oneshot::channel();
            let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
            let left = Countdown::new(BURST);
            for _ in 0..BURST {
                let (left, tx) = (left.clone(), tx.clone());
                drop(
                    pool.try_submit(async move {
                        if left.done() {
                            let _ = tx.lock().expect("unpoisoned").take().map(|t| t.send(()));
                        }
                    })
                    .expect("the queue holds a burst"),
                );
            }
            rx.await.expect("the last task signals");
        })
    });
    group.bench_function(BenchmarkId::new("pool_try_spawn", BURST), |b| {
        b.to_async(&rt).iter(|| async {
            let (tx, rx) = oneshot::channel();
            let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
            let left = Countdown::new(BURST);
            for _ in 0..BURST {
                let (left, tx) = (left.clone(), tx.clone());
                pool.try_spawn(async move {
                    if left.done() {
                        let _ = tx.lock().expect("unpoisoned").take().map(|t| t.send(()));
                    }
                })
                .expect("the queue holds a burst");
            }
            rx.await.expect("the last task signals");
        })
    });
    group.bench_function(BenchmarkId::new("blocking_try_submit", BURST), |b| {
        b.iter(|| {
            let (tx, rx) = mpsc::channel();
            let left = Countdown::new(BURST);
            for _ in 0..BURST {
                let (left, tx) = (left.clone(), tx.clone());
                drop(
                    blocking
                        .try_submit(move || {
                            if left.done() {
                                let _ = tx.send(());
                            }
                        })
                        .expect("the queue holds a burst"),
                );
            }
            rx.recv().expect("the last closure signals");
        })
    });
    group.bench_function(BenchmarkId::new("blocking_try_spawn", BURST), |b| {
        b.iter(|| {
            let (tx, rx) = mpsc::channel();
            let left = Countdown::new(BURST);
            for _ in 0..BURST {
                let (left, tx) = (left.clone(), tx.clone());
                blocking
                    .try_spawn(move || {
                        if left.done() {
                            let _ = tx.send(());
                        }
                    })
                    .expect("the queue holds a burst");
            }
            rx.recv().expect("the last closure signals");
        })
    });
    group.finish();
    rt.block_on(pool.shutdown());
    blocking.shutdown();
}

criterion_group!(benches, round_trip, burst);
criterion_main!(benches);
