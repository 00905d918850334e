//! Shapes on OS threads: `std::thread::spawn`, rayon, and a hand-rolled crossbeam pool.
//! The producer is the lab's main thread; pool threads are started outside the timed region.

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use anyhow::Context as _;

use super::batch::Batch;
use super::common::{check_sum, job, windows, Shape};
use super::tokio_shapes::CHANNEL_CAPACITY;
use crate::run_stats::{Sample, Stopwatch};

/// Threads in flight at once in `std_thread_spawn`: spawn this many, then join them.
const THREADS_IN_FLIGHT: usize = 64;

/// One op: `std::thread::spawn(move || a + b)` and `join` for the result, 64 threads at a
/// time.
#[derive(Debug, Default)]
pub(crate) struct StdThreadSpawn;

impl Shape for StdThreadSpawn {
    fn run(&mut self, ops: u64) -> anyhow::Result<Sample> {
        let mut handles: Vec<JoinHandle<u64>> = Vec::with_capacity(THREADS_IN_FLIGHT);
        let mut sum = 0u64;
        let clock = Stopwatch::start();
        for i in 0..ops {
            let (a, b) = job(i);
            handles.push(std::thread::spawn(move || a + b));
            if handles.len() == THREADS_IN_FLIGHT || i + 1 == ops {
                for h in handles.drain(..) {
                    let v = h
                        .join()
                        .map_err(|_| anyhow::anyhow!("a spawned thread panicked"))?;
                    sum = sum.wrapping_add(v);
                }
            }
        }
        let sample = clock.stop(ops);
        check_sum("std_thread_spawn", sum, ops)?;
        Ok(sample)
    }
}

/// A rayon pool of `cores` threads.
#[derive(Debug)]
pub(crate) struct Rayon {
    pool: rayon::ThreadPool,
    batch: &'static Batch,
    scope: bool,
}

impl Rayon {
    /// `scope == false`: `ThreadPool::spawn` per op from the main thread (outside the pool,
    /// so through rayon's injector), atomic sum + completion signal.
    /// `scope == true`: `scope.spawn` per op inside `ThreadPool::scope` (the scope body
    /// runs on a pool thread, so spawns go to its local deque); the scope is the completion.
    pub(crate) fn new(cores: usize, scope: bool) -> anyhow::Result<Rayon> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cores)
            .thread_name(|i| format!("lab-rayon-{i}"))
            .build()
            .context("building the rayon pool")?;
        Ok(Rayon {
            pool,
            batch: Batch::leak(),
            scope,
        })
    }
}

impl Shape for Rayon {
    fn run(&mut self, ops: u64) -> anyhow::Result<Sample> {
        let batch = self.batch;
        if self.scope {
            let sum = AtomicU64::new(0);
            let clock = Stopwatch::start();
            for window in windows(ops) {
                self.pool.scope(|s| {
                    for i in window {
                        let (a, b) = job(i);
                        let sum = &sum;
                        s.spawn(move |_| {
                            sum.fetch_add(a + b, Ordering::Relaxed);
                        });
                    }
                });
            }
            let sample = clock.stop(ops);
            check_sum("rayon_scope", sum.into_inner(), ops)?;
            Ok(sample)
        } else {
            let clock = Stopwatch::start();
            for window in windows(ops) {
                batch.arm((window.end - window.start) as usize);
                for i in window {
                    let (a, b) = job(i);
                    self.pool.spawn(move || batch.complete(a + b));
                }
                batch.wait_blocking();
            }
            let sample = clock.stop(ops);
            check_sum("rayon_spawn", batch.take_sum(), ops)?;
            Ok(sample)
        }
    }
}

/// A job of the boxed crossbeam pool: what a general-purpose pool has to carry.
type BoxedJob = Box<dyn FnOnce() + Send>;

/// `cores` OS threads receiving from one bounded crossbeam channel; the main thread sends.
/// One op: send, receive, compute, complete in the [`Batch`]. The plain variant sends the
/// data `(a, b)` (as the seed's pools do, 0 allocations); the boxed variant sends a
/// `Box<dyn FnOnce>` closure, the one allocation any closure-taking pool such as
/// `surgepool::BlockingPool` must at least pay.
#[derive(Debug)]
pub(crate) struct CrossbeamPool {
    // Dropped (closed) in `drop` before the threads are joined.
    data: Option<crossbeam_channel::Sender<(u64, u64)>>,
    boxed: Option<crossbeam_channel::Sender<BoxedJob>>,
    threads: Vec<JoinHandle<()>>,
    batch: &'static Batch,
}

impl CrossbeamPool {
    pub(crate) fn new(threads: usize, boxed: bool) -> anyhow::Result<CrossbeamPool> {
        let batch = Batch::leak();
        let mut pool = CrossbeamPool {
            data: None,
            boxed: None,
            threads: Vec::with_capacity(threads),
            batch,
        };
        if boxed {
            let (tx, rx) = crossbeam_channel::bounded::<BoxedJob>(CHANNEL_CAPACITY);
            for i in 0..threads {
                let rx = rx.clone();
                pool.threads.push(
                    std::thread::Builder::new()
                        .name(format!("lab-crossbeam-{i}"))
                        .spawn(move || rx.iter().for_each(|f| f()))?,
                );
            }
            pool.boxed = Some(tx);
        } else {
            let (tx, rx) = crossbeam_channel::bounded::<(u64, u64)>(CHANNEL_CAPACITY);
            for i in 0..threads {
                let rx = rx.clone();
                pool.threads.push(
                    std::thread::Builder::new()
                        .name(format!("lab-crossbeam-{i}"))
                        .spawn(move || rx.iter().for_each(|(a, b)| batch.complete(a + b)))?,
                );
            }
            pool.data = Some(tx);
        }
        Ok(pool)
    }
}

impl Shape for CrossbeamPool {
    fn run(&mut self, ops: u64) -> anyhow::Result<Sample> {
        let batch = self.batch;
        let clock = Stopwatch::start();
        for window in windows(ops) {
            batch.arm((window.end - window.start) as usize);
            for i in window {
                let (a, b) = job(i);
                if let Some(tx) = &self.data {
                    tx.send((a, b))?;
                } else if let Some(tx) = &self.boxed {
                    tx.send(Box::new(move || batch.complete(a + b)))
                        .map_err(|_| anyhow::anyhow!("crossbeam pool closed"))?;
                }
            }
            batch.wait_blocking();
        }
        let sample = clock.stop(ops);
        check_sum("crossbeam_pool", batch.take_sum(), ops)?;
        Ok(sample)
    }
}

impl Drop for CrossbeamPool {
    fn drop(&mut self) {
        self.data = None;
        self.boxed = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_shapes_complete_every_op() {
        StdThreadSpawn.run(70).unwrap();
        for scope in [false, true] {
            let mut r = Rayon::new(2, scope).unwrap();
            r.run(1).unwrap();
            r.run(1000).unwrap();
        }
        for boxed in [false, true] {
            let mut p = CrossbeamPool::new(2, boxed).unwrap();
            p.run(1).unwrap();
            p.run(1000).unwrap();
        }
    }
}
