//! surgepool's pools in the same shapes, so their rows compare with the hand-rolled ones.
//!
//! Both pools get `Limit::fixed(cores)` and a queue of [`CHANNEL_CAPACITY`], the capacity of
//! the hand-rolled pools' channels; the async pool keeps `cores` workers alive (`min_workers`)
//! as the hand-rolled pools keep their tasks. A submit that finds the pool full waits for
//! room (`submit`, `submit_timeout`), as a send on a full channel does.

use std::time::Duration;

use surgepool::{BlockingPool, Limit, Pool, SubmitError};

use super::batch::Batch;
use super::common::{check_sum, job, windows, Shape, TokioRig, WINDOW};
use super::tokio_shapes::CHANNEL_CAPACITY;
use crate::run_stats::{Sample, Stopwatch};

/// How long the blocking producer waits for room before calling the run failed.
const SUBMIT_WAIT: Duration = Duration::from_secs(10);

/// Which of `Pool`'s shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolShape {
    /// `surgepool_pool`: `submit(fut).await` per op, the handle kept and awaited for the result.
    Handle,
    /// `surgepool_pool_spawn`: `spawn(fut).await` per op (fire-and-forget, no handle; it
    /// waits only while the pool is full); atomic sum + completion signal, as
    /// `spawn_atomic`.
    Spawn,
    /// `surgepool_pool_detach`: `try_submit` per op and the handle dropped at once (which
    /// detaches the task); atomic sum + completion signal.
    Detach,
}

/// A `surgepool::Pool` on its own runtime.
#[derive(Debug)]
pub(crate) struct OurPool {
    pool: Pool,
    kind: PoolShape,
    batch: &'static Batch,
    // Last: the pool shuts down (in `drop`) while the runtime still runs.
    rig: TokioRig,
}

impl OurPool {
    /// `limit: None` is `Limit::fixed(cores)`; `Some(limit)` tries another (the default
    /// `Limit::adaptive()`, for the `_adaptive` row).
    pub(crate) fn new(
        kind: PoolShape,
        cores: usize,
        limit: Option<Limit>,
    ) -> anyhow::Result<OurPool> {
        let rig = TokioRig::new(cores)?;
        let pool = {
            let _ambient = rig.rt().enter();
            Pool::builder()
                .limit(limit.unwrap_or_else(|| Limit::fixed(cores)))
                .queue_capacity(CHANNEL_CAPACITY)
                .min_workers(cores)
                .build()?
        };
        Ok(OurPool {
            pool,
            kind,
            batch: Batch::leak(),
            rig,
        })
    }
}

fn rejected<F>(err: SubmitError<F>) -> anyhow::Error {
    let hint = if err.is_closed() {
        " (a pool that is closed from the start is the pre-implementation stub)"
    } else {
        ""
    };
    anyhow::anyhow!("surgepool rejected a submit: {err}{hint}")
}

impl Shape for OurPool {
    fn run(&mut self, ops: u64) -> anyhow::Result<Sample> {
        let (pool, batch) = (self.pool.clone(), self.batch);
        match self.kind {
            PoolShape::Handle => self.rig.run(async move {
                let mut handles = Vec::with_capacity(ops.min(WINDOW) as usize);
                let mut sum = 0u64;
                let clock = Stopwatch::start();
                for window in windows(ops) {
                    for i in window {
                        let (a, b) = job(i);
                        handles.push(pool.submit(async move { a + b }).await.map_err(rejected)?);
                    }
                    for h in handles.drain(..) {
                        sum = sum.wrapping_add(h.await?);
                    }
                }
                let sample = clock.stop(ops);
                check_sum("surgepool_pool", sum, ops)?;
                Ok(sample)
            }),
            PoolShape::Detach => self.rig.run(async move {
                let clock = Stopwatch::start();
                for window in windows(ops) {
                    batch.arm((window.end - window.start) as usize);
                    for i in window {
                        let (a, b) = job(i);
                        let task = async move { batch.complete(a + b) };
                        match pool.try_submit(task) {
                            // Dropping the handle detaches the task.
                            Ok(_detached) => {}
                            Err(SubmitError::Full(task)) => {
                                let _detached = pool.submit(task).await.map_err(rejected)?;
                            }
                            Err(other) => return Err(rejected(other)),
                        }
                    }
                    batch.wait().await;
                }
                let sample = clock.stop(ops);
                check_sum("surgepool_pool_detach", batch.take_sum(), ops)?;
                Ok(sample)
            }),
            PoolShape::Spawn => self.rig.run(async move {
                let clock = Stopwatch::start();
                for window in windows(ops) {
                    batch.arm((window.end - window.start) as usize);
                    for i in window {
                        let (a, b) = job(i);
                        // Waits while the pool is full, as a send on a full channel does.
                        pool.spawn(async move { batch.complete(a + b) })
                            .await
                            .map_err(rejected)?;
                    }
                    batch.wait().await;
                }
                let sample = clock.stop(ops);
                check_sum("surgepool_pool_spawn", batch.take_sum(), ops)?;
                Ok(sample)
            }),
        }
    }
}

impl Drop for OurPool {
    fn drop(&mut self) {
        let pool = self.pool.clone();
        let _ = self
            .rig
            .rt()
            .block_on(async move { tokio::time::timeout(SUBMIT_WAIT, pool.shutdown()).await });
    }
}

/// `surgepool_blocking`: a `surgepool::BlockingPool` fed by the main thread with
/// `spawn_timeout` per op (fire-and-forget, no handle; it blocks only while the pool is
/// full); atomic sum + completion signal, as `crossbeam_pool_<cores>`.
#[derive(Debug)]
pub(crate) struct OurBlockingPool {
    pool: BlockingPool,
    batch: &'static Batch,
}

impl OurBlockingPool {
    pub(crate) fn new(cores: usize) -> anyhow::Result<OurBlockingPool> {
        let pool = BlockingPool::builder()
            .limit(Limit::fixed(cores))
            .queue_capacity(CHANNEL_CAPACITY)
            .build()?;
        Ok(OurBlockingPool {
            pool,
            batch: Batch::leak(),
        })
    }
}

impl Shape for OurBlockingPool {
    fn run(&mut self, ops: u64) -> anyhow::Result<Sample> {
        let batch = self.batch;
        let clock = Stopwatch::start();
        for window in windows(ops) {
            batch.arm((window.end - window.start) as usize);
            for i in window {
                let (a, b) = job(i);
                // Blocks while the pool is full, as a send on a full channel does.
                self.pool
                    .spawn_timeout(move || batch.complete(a + b), SUBMIT_WAIT)
                    .map_err(rejected)?;
            }
            batch.wait_blocking();
        }
        let sample = clock.stop(ops);
        check_sum("surgepool_blocking", batch.take_sum(), ops)?;
        Ok(sample)
    }
}

impl Drop for OurBlockingPool {
    fn drop(&mut self) {
        let _ = self.pool.shutdown_timeout(SUBMIT_WAIT);
    }
}
