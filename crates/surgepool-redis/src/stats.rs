//! Exact accounting of a consumer.

use std::sync::atomic::{AtomicU64, Ordering};

/// One consumer's counters, read at one instant ([`Consumer::snapshot`](crate::Consumer::snapshot)).
///
/// At quiescence (no fetch or settle in progress):
/// - `fetched == acked + retried + dead + handed_back + stale + in_flight`
///
/// and fleet-wide, summing every consumer's `acked` and `dead` (or reading the dead-letter
/// stream) and every producer's `pushed`:
/// - `pushed == acked + dead + waiting`, where `waiting` is
///   [`FleetStats::waiting`](crate::FleetStats::waiting) (in the stream or in the retry set).
///
/// `stale` counts jobs whose lease lapsed while this consumer ran them, so that another
/// consumer took them over and settled them first: this consumer's outcome was not applied.
/// It stays 0 unless a process stalled longer than the lease or Redis was down that long.
///
/// # Examples
///
/// ```
/// let s = surgepool_redis::Snapshot::default();
/// assert_eq!(s.fetched, s.acked + s.retried + s.dead + s.handed_back + s.stale + s.in_flight);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Jobs pushed through the consumer's `Queue` handle (and its clones) in this process.
    pub pushed: u64,
    /// Deliveries taken: XREADGROUP plus reclaimed ones.
    pub fetched: u64,
    /// Jobs whose handler succeeded and whose ack Redis confirmed.
    pub acked: u64,
    /// Failed runs scheduled for a retry (each moves back into the stream after its backoff).
    pub retried: u64,
    /// Jobs this consumer sent to the dead-letter stream (failed, or reclaimed past
    /// `max_deliveries` because their workers kept dying).
    pub dead: u64,
    /// Of `fetched`, the deliveries taken over from a consumer whose lease lapsed.
    pub reclaimed: u64,
    /// Jobs handed back unfinished at drain.
    pub handed_back: u64,
    /// Jobs another consumer settled first after this one's lease lapsed.
    pub stale: u64,
    /// Fetched and not yet settled in Redis.
    pub in_flight: u64,
    /// The current limit (the most jobs fetched and running at once).
    pub limit: u64,
    /// The current lease, in ms: how long a job may sit idle before others take it over.
    pub lease_ms: u64,
    /// Redis calls that failed or timed out (each retried with backoff).
    pub redis_errors: u64,
    /// Jobs moved from the retry set back into the stream by this consumer's mover.
    pub moved: u64,
    /// `XREADGROUP` calls that returned at least one entry: `(fetched - reclaimed) / reads`
    /// is the mean fetch size.
    pub reads: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) fetched: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead: AtomicU64,
    pub(crate) reclaimed: AtomicU64,
    pub(crate) handed_back: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) redis_errors: AtomicU64,
    pub(crate) moved: AtomicU64,
    pub(crate) reads: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
