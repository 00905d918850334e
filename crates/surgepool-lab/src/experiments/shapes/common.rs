//! What every shape shares: the work unit, the windows, the runtime rig and the sum check.

use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use tokio::runtime::Runtime;

use crate::run_stats::Sample;

/// The most ops in flight at once in the spawn shapes. Go's benchmarks spawn all `b.N`
/// goroutines before waiting; with an adaptive `b.N` in the millions that would hold
/// hundreds of MB of tasks here, so a run is cut into windows of this many ops, each waited
/// for before the next starts. A window's drain costs a few µs, under 0.1 ns per op.
pub(crate) const WINDOW: u64 = 1 << 16;

/// A shape, set up (runtime, pool, threads) and ready to run; dropping it tears it down.
pub(crate) trait Shape {
    /// Does `ops` ops (or a few more, to whole batches) and returns the timed sample.
    fn run(&mut self, ops: u64) -> anyhow::Result<Sample>;
}

/// The inputs of op `i`. Its work unit is the seed's `a + b`.
#[inline]
pub(crate) fn job(i: u64) -> (u64, u64) {
    (i, i + 1)
}

/// The sum of `a + b` over ops `0..ops`: Σ (2i + 1) = ops².
pub(crate) fn expected_sum(ops: u64) -> u64 {
    ops.wrapping_mul(ops)
}

/// Fails unless the ops' results add up: proof the work ran, and ran once.
pub(crate) fn check_sum(shape: &str, got: u64, ops: u64) -> anyhow::Result<()> {
    let want = expected_sum(ops);
    anyhow::ensure!(
        got == want,
        "{shape}: the ops' results sum to {got}, expected {want}: work was lost or repeated"
    );
    Ok(())
}

/// Splits `0..ops` into windows of at most [`WINDOW`] ops.
pub(crate) fn windows(ops: u64) -> impl Iterator<Item = Range<u64>> {
    (0..ops.div_ceil(WINDOW)).map(move |w| w * WINDOW..((w + 1) * WINDOW).min(ops))
}

/// A multi-thread tokio runtime with one worker per core, built outside the timed region.
#[derive(Debug)]
pub(crate) struct TokioRig {
    rt: Option<Runtime>,
}

impl TokioRig {
    /// Builds the runtime.
    pub(crate) fn new(cores: usize) -> anyhow::Result<TokioRig> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .enable_all()
            .build()?;
        Ok(TokioRig { rt: Some(rt) })
    }

    /// The runtime.
    pub(crate) fn rt(&self) -> &Runtime {
        self.rt.as_ref().expect("runtime is only taken in drop")
    }

    /// Runs `fut` as a task on a worker (not on the calling thread, as `block_on` would):
    /// tasks it spawns then go to that worker's local queue, as the Go benchmark's goroutine
    /// spawns onto its own P.
    pub(crate) fn run<F>(&self, fut: F) -> anyhow::Result<Sample>
    where
        F: Future<Output = anyhow::Result<Sample>> + Send + 'static,
    {
        let rt = self.rt();
        rt.block_on(rt.spawn(fut))?
    }
}

impl Drop for TokioRig {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_op_once() {
        assert_eq!(windows(0).count(), 0);
        let bounds = |ops| windows(ops).map(|r| (r.start, r.end)).collect::<Vec<_>>();
        assert_eq!(bounds(3), [(0, 3)]);
        assert_eq!(
            bounds(2 * WINDOW + 5),
            [
                (0, WINDOW),
                (WINDOW, 2 * WINDOW),
                (2 * WINDOW, 2 * WINDOW + 5)
            ]
        );
    }

    #[test]
    fn expected_sum_is_the_sum_of_jobs() {
        for ops in [0u64, 1, 2, 17, 1000] {
            let direct = (0..ops)
                .map(job)
                .fold(0u64, |s, (a, b)| s.wrapping_add(a + b));
            assert_eq!(expected_sum(ops), direct);
        }
        assert!(check_sum("x", 4, 2).is_ok());
        assert!(check_sum("x", 5, 2).is_err());
    }
}
