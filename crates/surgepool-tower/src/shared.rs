//! The state every clone of a layer and of its services shares through one `Arc`: the
//! limiter, the queue's occupancy, the settings and the counters.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use surgepool::limit::{Limiter, LimiterStats, Permit};

use crate::classify::{Outcome, SharedClassifier};
use crate::reaper::BodyPermits;
use crate::response::{OverloadResponse, Reason};

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) limiter: Limiter,
    pub(crate) queue_capacity: usize,
    pub(crate) deadline: Option<Duration>,
    pub(crate) overload: OverloadResponse,
    pub(crate) classifier: SharedClassifier,
    /// Permits held by streaming bodies, released when `body_timeout` runs out.
    pub(crate) bodies: BodyPermits,
    requests: AtomicU64,
    queued: AtomicUsize,
    admitted: AtomicU64,
    overloaded: AtomicU64,
    queue_timeouts: AtomicU64,
    cancelled: AtomicU64,
    timeouts: AtomicU64,
    body_timeouts: AtomicU64,
}

impl Shared {
    pub(crate) fn new(
        limiter: Limiter,
        queue_capacity: usize,
        deadline: Option<Duration>,
        overload: OverloadResponse,
        classifier: SharedClassifier,
        body_timeout: Duration,
    ) -> Shared {
        Shared {
            limiter,
            queue_capacity,
            deadline,
            overload,
            classifier,
            bodies: BodyPermits::new(body_timeout),
            requests: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            admitted: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            queue_timeouts: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            body_timeouts: AtomicU64::new(0),
        }
    }

    /// Counts a request `call` took (before it is admitted, queued or shed, so a reader never
    /// sees more outcomes than requests).
    pub(crate) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::AcqRel);
    }

    /// Takes a place in the queue if one is free. The place is given back when the returned
    /// slot leaves the queue: admitted or timed out ([`QueueSlot::leave`]), or dropped with
    /// its request (counted as cancelled).
    pub(crate) fn try_enqueue(self: &Arc<Self>) -> Option<QueueSlot> {
        let capacity = self.queue_capacity;
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < capacity).then_some(n + 1)
            })
            .ok()
            .map(|_| QueueSlot(self.clone()))
    }

    pub(crate) fn count_body_timeout(&self) {
        self.body_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_admitted(&self) {
        self.admitted.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn count_shed(&self, reason: Reason) {
        let counter = match reason {
            Reason::Overloaded => &self.overloaded,
            Reason::QueueTimeout => &self.queue_timeouts,
            Reason::Timeout => &self.timeouts,
        };
        counter.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn stats(&self) -> AdmissionStats {
        // Outcomes first, `requests` last: a request is counted before its outcome, so a
        // concurrent read errs towards requests still on their way.
        let queued = self.queued.load(Ordering::Acquire);
        let admitted = self.admitted.load(Ordering::Acquire);
        let overloaded = self.overloaded.load(Ordering::Acquire);
        let queue_timeouts = self.queue_timeouts.load(Ordering::Acquire);
        let cancelled = self.cancelled.load(Ordering::Acquire);
        AdmissionStats {
            requests: self.requests.load(Ordering::Acquire),
            admitted,
            overloaded,
            queue_timeouts,
            cancelled,
            timeouts: self.timeouts.load(Ordering::Relaxed),
            body_timeouts: self.body_timeouts.load(Ordering::Relaxed),
            queued,
            limiter: self.limiter.stats(),
        }
    }
}

/// A place in the admission queue. Leaving it through [`leave`](Self::leave) counts the
/// request's outcome; dropping it (the request's future was dropped while it waited) counts
/// the request as cancelled.
#[derive(Debug)]
pub(crate) struct QueueSlot(Arc<Shared>);

/// How a request left the queue on its own.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Left {
    Admitted,
    TimedOut,
}

impl QueueSlot {
    pub(crate) fn leave(self, how: Left) {
        let shared = &self.0;
        // The outcome is counted before the place is given back, so a reader sees the request
        // twice for an instant rather than nowhere.
        match how {
            Left::Admitted => shared.count_admitted(),
            Left::TimedOut => shared.count_shed(Reason::QueueTimeout),
        }
        shared.queued.fetch_sub(1, Ordering::AcqRel);
        std::mem::forget(self);
    }
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.cancelled.fetch_add(1, Ordering::AcqRel);
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

/// Counters of an [`AdmissionLayer`](crate::AdmissionLayer).
///
/// # Identity
///
/// Every request `call` took is exactly one of: admitted, shed (`overloaded +
/// queue_timeouts`), cancelled while it waited in the queue, or still `queued`:
///
/// ```text
/// requests == admitted + overloaded + queue_timeouts + cancelled + queued
/// ```
///
/// It holds exactly whenever no request is between two states (at quiescence, e.g. after
/// the server stopped). A read taken while requests move may be off by the requests in
/// transit: one counted in `requests` but not yet in an outcome, or counted both as `queued`
/// and in its outcome for an instant.
/// `timeouts` and `body_timeouts` are subsets of `admitted` (admitted, then cut off by the
/// deadline, or holding a body past `body_timeout`).
///
/// ```
/// use surgepool::Limit;
/// use surgepool_tower::AdmissionLayer;
///
/// let layer = AdmissionLayer::new(Limit::fixed(8)).unwrap();
/// let s = layer.stats();
/// assert_eq!(
///     s.requests,
///     s.admitted + s.overloaded + s.queue_timeouts + s.cancelled + s.queued as u64
/// );
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdmissionStats {
    /// Requests the layer's services were called with.
    pub requests: u64,
    /// Requests that got a permit and went to the inner service.
    pub admitted: u64,
    /// Requests shed at once: the limit was reached and the queue full (or absent).
    pub overloaded: u64,
    /// Requests whose deadline passed while they waited in the queue.
    pub queue_timeouts: u64,
    /// Requests whose response future was dropped while they waited in the queue (the
    /// client went away, or an outer timeout fired). They never held a permit, so the
    /// limiter saw nothing of them.
    pub cancelled: u64,
    /// Admitted requests whose deadline passed before the inner service answered.
    pub timeouts: u64,
    /// Admitted requests whose response body still held the permit when
    /// [`body_timeout`](crate::AdmissionLayerBuilder::body_timeout) ran out: the permit was
    /// released as a drop, and the body went on streaming without it.
    pub body_timeouts: u64,
    /// Requests waiting in the queue now.
    pub queued: usize,
    /// The limiter's own counters (limit, in flight, successes, drops).
    pub limiter: LimiterStats,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::classify::HttpClassifier;

    /// A `Shared` with no queue and no deadline.
    pub(crate) fn shared(limiter: Limiter, body_timeout: Duration) -> Shared {
        Shared::new(
            limiter,
            0,
            None,
            OverloadResponse::default(),
            SharedClassifier(Box::new(HttpClassifier)),
            body_timeout,
        )
    }
}
