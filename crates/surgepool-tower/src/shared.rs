//! The state every clone of a layer and of its services shares through one `Arc`: the
//! limiter, the queue's occupancy, the settings and the counters.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use surgepool::limit::{Limiter, LimiterStats, Permit};

use crate::classify::{Outcome, SharedClassifier};
use crate::response::{OverloadResponse, Reason};

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) limiter: Limiter,
    pub(crate) queue_capacity: usize,
    pub(crate) deadline: Option<Duration>,
    pub(crate) overload: OverloadResponse,
    pub(crate) classifier: SharedClassifier,
    queued: AtomicUsize,
    admitted: AtomicU64,
    overloaded: AtomicU64,
    queue_timeouts: AtomicU64,
    timeouts: AtomicU64,
}

impl Shared {
    pub(crate) fn new(
        limiter: Limiter,
        queue_capacity: usize,
        deadline: Option<Duration>,
        overload: OverloadResponse,
        classifier: SharedClassifier,
    ) -> Shared {
        Shared {
            limiter,
            queue_capacity,
            deadline,
            overload,
            classifier,
            queued: AtomicUsize::new(0),
            admitted: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            queue_timeouts: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
        }
    }

    /// Takes a place in the queue if one is free. The place is given back when the returned
    /// slot drops (the request got its permit, timed out, or was cancelled).
    pub(crate) fn try_enqueue(self: &Arc<Self>) -> Option<QueueSlot> {
        let capacity = self.queue_capacity;
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < capacity).then_some(n + 1)
            })
            .ok()
            .map(|_| QueueSlot(self.clone()))
    }

    pub(crate) fn count_admitted(&self) {
        self.admitted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_shed(&self, reason: Reason) {
        let counter = match reason {
            Reason::Overloaded => &self.overloaded,
            Reason::QueueTimeout => &self.queue_timeouts,
            Reason::Timeout => &self.timeouts,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> AdmissionStats {
        AdmissionStats {
            admitted: self.admitted.load(Ordering::Relaxed),
            overloaded: self.overloaded.load(Ordering::Relaxed),
            queue_timeouts: self.queue_timeouts.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            limiter: self.limiter.stats(),
        }
    }
}

/// A place in the admission queue, given back on drop.
#[derive(Debug)]
pub(crate) struct QueueSlot(Arc<Shared>);

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reports `outcome` for `permit` to the limiter.
pub(crate) fn release(permit: Permit, outcome: Outcome) {
    match outcome {
        Outcome::Success => permit.success(),
        Outcome::Dropped => permit.dropped(),
        Outcome::Ignore => permit.ignore(),
    }
}

/// Counters of an [`AdmissionLayer`](crate::AdmissionLayer), read at one instant.
///
/// Every request the layer saw is, at any instant, exactly one of: admitted, shed
/// (`overloaded + queue_timeouts`), or `queued`. `timeouts` is a subset of `admitted`
/// (admitted, then cut off by the deadline).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdmissionStats {
    /// Requests that got a permit and went to the inner service.
    pub admitted: u64,
    /// Requests shed at once: the limit was reached and the queue full (or absent).
    pub overloaded: u64,
    /// Requests whose deadline passed while they waited in the queue.
    pub queue_timeouts: u64,
    /// Admitted requests whose deadline passed before the inner service answered.
    pub timeouts: u64,
    /// Requests waiting in the queue now.
    pub queued: usize,
    /// The limiter's own counters (limit, in flight, successes, drops).
    pub limiter: LimiterStats,
}
