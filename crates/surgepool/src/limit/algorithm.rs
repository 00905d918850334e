//! The interface every limit algorithm implements (Netflix concurrency-limits' shape:
//! `onSample(startTime, rtt, inflight, didDrop) -> newLimit`).

use std::fmt::Debug;
use std::time::Duration;

use tokio::time::Instant;

/// One finished job, as the limiter saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// When the job finished (tokio's clock, so paused-time tests drive it).
    pub(crate) now: Instant,
    /// How long the job held its permit.
    pub(crate) rtt: Duration,
    /// Permits held when the job finished, itself included.
    pub(crate) in_flight: usize,
    /// `true` when the job failed in a way that signals overload (timeout, 503, shed).
    pub(crate) dropped: bool,
}

/// A limit algorithm: takes samples, returns the new limit (always at least 1).
pub(crate) trait Algorithm: Send + Debug + 'static {
    fn update(&mut self, sample: &Sample) -> usize;
}
