//! The seed's shapes on tokio, and tokio's own ways to hand work over.
//!
//! Every body runs as a task on a multi-thread runtime with one worker per core
//! ([`TokioRig`]); the clock starts and stops inside that task. Runtime, pool tasks and
//! channels are created once per shape, outside the timed region.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::batch::Batch;
use super::common::{check_sum, job, windows, Shape, TokioRig, WINDOW};
use crate::run_stats::{Sample, Stopwatch};

/// Capacity of the pools' job channels: the shared channel holds this many jobs, and the
/// per-worker channels hold this many between them (at least [`MIN_PER_WORKER`] each).
pub(crate) const CHANNEL_CAPACITY: usize = 1024;
const MIN_PER_WORKER: usize = 16;

/// Which spawn-per-request shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spawn {
    /// `tokio::spawn` per op; the result comes back through a `oneshot` (Go: chan result).
    Oneshot,
    /// `tokio::spawn` per op; atomic sum + completion signal (Go: WaitGroup).
    Atomic,
    /// `JoinSet::spawn` per op; results collected with `join_next`.
    JoinSet,
    /// `spawn_blocking` per op onto tokio's blocking threads; atomic sum + completion.
    Blocking,
}

/// A spawn-per-request shape on its own runtime.
#[derive(Debug)]
pub(crate) struct SpawnShape {
    kind: Spawn,
    rig: TokioRig,
    batch: &'static Batch,
}

impl SpawnShape {
    pub(crate) fn new(kind: Spawn, cores: usize) -> anyhow::Result<SpawnShape> {
        Ok(SpawnShape {
            kind,
            rig: TokioRig::new(cores)?,
            batch: Batch::leak(),
        })
    }
}

impl Shape for SpawnShape {
    fn run(&mut self, ops: u64) -> anyhow::Result<Sample> {
        let batch = self.batch;
        match self.kind {
            Spawn::Oneshot => self.rig.run(spawn_oneshot(ops)),
            Spawn::Atomic => self.rig.run(spawn_atomic(batch, ops, false)),
            Spawn::Blocking => self.rig.run(spawn_atomic(batch, ops, true)),
            Spawn::JoinSet => self.rig.run(joinset(ops)),
        }
    }
}

async fn spawn_oneshot(ops: u64) -> anyhow::Result<Sample> {
    // Room for one window of receivers, allocated before the clock starts.
    let mut receivers = Vec::with_capacity(ops.min(WINDOW) as usize);
    let mut sum = 0u64;
    let clock = Stopwatch::start();
    for window in windows(ops) {
        for i in window {
            let (a, b) = job(i);
            let (tx, rx) = oneshot::channel();
            tokio::spawn(async move {
                let _ = tx.send(a + b);
            });
            receivers.push(rx);
        }
        for rx in receivers.drain(..) {
            sum = sum.wrapping_add(rx.await?);
        }
    }
    let sample = clock.stop(ops);
    check_sum("spawn_oneshot", sum, ops)?;
    Ok(sample)
}

async fn spawn_atomic(batch: &'static Batch, ops: u64, blocking: bool) -> anyhow::Result<Sample> {
    let clock = Stopwatch::start();
    for window in windows(ops) {
        batch.arm((window.end - window.start) as usize);
        for i in window {
            let (a, b) = job(i);
            // The join handle is dropped at once: the op is detached, as a `go` statement.
            if blocking {
                drop(tokio::task::spawn_blocking(move || batch.complete(a + b)));
            } else {
                drop(tokio::spawn(async move { batch.complete(a + b) }));
            }
        }
        batch.wait().await;
    }
    let sample = clock.stop(ops);
    let name = if blocking {
        "spawn_blocking"
    } else {
        "spawn_atomic"
    };
    check_sum(name, batch.take_sum(), ops)?;
    Ok(sample)
}

async fn joinset(ops: u64) -> anyhow::Result<Sample> {
    let mut set = JoinSet::new();
    let mut sum = 0u64;
    let clock = Stopwatch::start();
    for window in windows(ops) {
        for i in window {
            let (a, b) = job(i);
            set.spawn(async move { a + b });
        }
        while let Some(result) = set.join_next().await {
            sum = sum.wrapping_add(result?);
        }
    }
    let sample = clock.stop(ops);
    check_sum("joinset", sum, ops)?;
    Ok(sample)
}

/// `workers` long-lived tasks that all receive from one bounded MPMC `async-channel` (the
/// shape of a Go channel, which tokio's single-consumer `mpsc` is not). One op: the
/// producer task sends `(a, b)`, a worker computes and completes it in the [`Batch`].
#[derive(Debug)]
pub(crate) struct SharedChannelPool {
    // Declared first so it drops first: the workers see the channel close and exit.
    jobs: async_channel::Sender<(u64, u64)>,
    rig: TokioRig,
    batch: &'static Batch,
}

impl SharedChannelPool {
    pub(crate) fn new(workers: usize, cores: usize) -> anyhow::Result<SharedChannelPool> {
        let rig = TokioRig::new(cores)?;
        let batch = Batch::leak();
        let (jobs, rx) = async_channel::bounded::<(u64, u64)>(CHANNEL_CAPACITY);
        for _ in 0..workers {
            let rx = rx.clone();
            rig.rt().spawn(async move {
                while let Ok((a, b)) = rx.recv().await {
                    batch.complete(a + b);
                }
            });
        }
        Ok(SharedChannelPool { jobs, rig, batch })
    }
}

impl Shape for SharedChannelPool {
    fn run(&mut self, ops: u64) -> anyhow::Result<Sample> {
        let (jobs, batch) = (self.jobs.clone(), self.batch);
        self.rig.run(async move {
            let clock = Stopwatch::start();
            for window in windows(ops) {
                batch.arm((window.end - window.start) as usize);
                for i in window {
                    jobs.send(job(i)).await?;
                }
                batch.wait().await;
            }
            let sample = clock.stop(ops);
            check_sum("pool_shared_channel", batch.take_sum(), ops)?;
            Ok(sample)
        })
    }
}

/// `workers` long-lived tasks, each with its own bounded tokio `mpsc` channel; the producer
/// deals the ops round-robin. One op: one send to the next worker's channel, computed and
/// completed in the [`Batch`].
#[derive(Debug)]
pub(crate) struct PerWorkerChannelPool {
    jobs: Arc<Vec<mpsc::Sender<(u64, u64)>>>,
    rig: TokioRig,
    batch: &'static Batch,
}

impl PerWorkerChannelPool {
    pub(crate) fn new(workers: usize, cores: usize) -> anyhow::Result<PerWorkerChannelPool> {
        let rig = TokioRig::new(cores)?;
        let batch = Batch::leak();
        let capacity = (CHANNEL_CAPACITY / workers.max(1)).max(MIN_PER_WORKER);
        let mut senders = Vec::with_capacity(workers);
        for _ in 0..workers.max(1) {
            let (tx, mut rx) = mpsc::channel::<(u64, u64)>(capacity);
            rig.rt().spawn(async move {
                while let Some((a, b)) = rx.recv().await {
                    batch.complete(a + b);
                }
            });
            senders.push(tx);
        }
        Ok(PerWorkerChannelPool {
            jobs: Arc::new(senders),
            rig,
            batch,
        })
    }
}

impl Shape for PerWorkerChannelPool {
    fn run(&mut self, ops: u64) -> anyhow::Result<Sample> {
        let (jobs, batch) = (Arc::clone(&self.jobs), self.batch);
        self.rig.run(async move {
            let workers = jobs.len() as u64;
            let clock = Stopwatch::start();
            for window in windows(ops) {
                batch.arm((window.end - window.start) as usize);
                for i in window {
                    jobs[(i % workers) as usize].send(job(i)).await?;
                }
                batch.wait().await;
            }
            let sample = clock.stop(ops);
            check_sum("pool_per_worker_channel", batch.take_sum(), ops)?;
            Ok(sample)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each shape runs a few ops and checks its own sum; these tests prove the plumbing
    // (windows, completion, teardown) on small and window-crossing counts.
    #[test]
    fn spawn_shapes_complete_every_op() {
        for kind in [
            Spawn::Oneshot,
            Spawn::Atomic,
            Spawn::JoinSet,
            Spawn::Blocking,
        ] {
            let mut shape = SpawnShape::new(kind, 2).unwrap();
            for ops in [1, 100] {
                let s = shape.run(ops).unwrap();
                assert_eq!(s.ops, ops, "{kind:?}");
            }
        }
    }

    #[test]
    fn pools_complete_every_op_across_windows() {
        let mut shared = SharedChannelPool::new(3, 2).unwrap();
        shared.run(WINDOW + 7).unwrap();
        shared.run(5).unwrap();
        let mut per = PerWorkerChannelPool::new(3, 2).unwrap();
        per.run(WINDOW + 7).unwrap();
        per.run(5).unwrap();
    }
}
