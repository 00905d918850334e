//! `Limiter::try_acquire` + release against `tokio::sync::Semaphore::try_acquire` + release,
//! in the same run: uncontended, and with two threads hammering one shared limiter. The
//! adaptive limiter runs its algorithm on every release (under its mutex); its `min` keeps
//! the limit from moving, so `try_acquire` never fails mid-benchmark.
//!
//! `cargo bench -p surgepool --bench limit`

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_main, Criterion};
use surgepool::limit::{Limit, Limiter};
use tokio::sync::Semaphore;

const PERMITS: usize = 1 << 20;

fn uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("uncontended");
    let limiter = Limiter::new(Limit::fixed(PERMITS)).unwrap();
    group.bench_function("limiter_fixed", |b| {
        b.iter(|| black_box(limiter.try_acquire().unwrap()).success())
    });
    let adaptive = Limiter::new(
        Limit::adaptive_builder()
            .min(1024)
            .initial(1024)
            .build()
            .unwrap(),
    )
    .unwrap();
    group.bench_function("limiter_adaptive", |b| {
        b.iter(|| black_box(adaptive.try_acquire().unwrap()).success())
    });
    let semaphore = Semaphore::new(PERMITS);
    group.bench_function("semaphore", |b| {
        b.iter(|| drop(black_box(semaphore.try_acquire().unwrap())))
    });
    group.finish();
}

/// Runs `op` `iters` times on each of two threads at once; returns the wall time, so the
/// figure is per pair of operations (one on each thread).
fn two_threads(iters: u64, op: impl Fn() + Send + Sync + 'static) -> Duration {
    let op = Arc::new(op);
    let barrier = Arc::new(Barrier::new(3));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (op, barrier) = (op.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    op();
                }
                barrier.wait();
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    barrier.wait();
    let elapsed = start.elapsed();
    for h in handles {
        h.join().unwrap();
    }
    elapsed
}

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("two_threads");
    group.bench_function("limiter_fixed", |b| {
        let limiter = Limiter::new(Limit::fixed(PERMITS)).unwrap();
        b.iter_custom(|iters| {
            let limiter = limiter.clone();
            two_threads(iters, move || {
                black_box(limiter.try_acquire().unwrap()).success()
            })
        })
    });
    group.bench_function("limiter_adaptive", |b| {
        let limiter = Limiter::new(
            Limit::adaptive_builder()
                .min(1024)
                .initial(1024)
                .build()
                .unwrap(),
        )
        .unwrap();
        b.iter_custom(|iters| {
            let limiter = limiter.clone();
            two_threads(iters, move || {
                black_box(limiter.try_acquire().unwrap()).success()
            })
        })
    });
    group.bench_function("semaphore", |b| {
        let semaphore = Arc::new(Semaphore::new(PERMITS));
        b.iter_custom(|iters| {
            let semaphore = semaphore.clone();
            two_threads(iters, move || {
                drop(black_box(semaphore.try_acquire().unwrap()))
            })
        })
    });
    group.finish();
}

// `criterion_group!` generates an undocumented `pub fn`.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::uncontended, super::contended);
}
criterion_main!(group::benches);
