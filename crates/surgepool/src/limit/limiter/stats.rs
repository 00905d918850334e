//! The limiter's counters as callers read them: [`LimiterStats`], taken at one instant.

use super::Limiter;
use crate::sync::Ordering;

/// Counters of a [`Limiter`], read at one instant by [`Limiter::stats`] (see the
/// [example on `Limiter`](Limiter#examples)) or a pool's `limiter_stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimiterStats {
    /// The current limit.
    pub limit: usize,
    /// Permits held now.
    pub in_flight: usize,
    /// Permits released with [`Permit::success`](crate::limit::Permit::success).
    pub succeeded: u64,
    /// Permits released with [`Permit::dropped`](crate::limit::Permit::dropped), or simply
    /// dropped.
    pub dropped: u64,
    /// Permits released with [`Permit::ignore`](crate::limit::Permit::ignore).
    pub ignored: u64,
    /// Tasks waiting in [`Limiter::acquire`] now.
    pub waiters: usize,
    /// Samples on which the limit's algorithm panicked (the limit then stayed as it was;
    /// a bug in the algorithm, never a reason to lose a slot).
    pub algorithm_panics: u64,
}

impl Limiter {
    /// The limiter's counters.
    ///
    /// See the [example on `Limiter`](Limiter#examples).
    pub fn stats(&self) -> LimiterStats {
        LimiterStats {
            limit: self.limit(),
            in_flight: self.in_flight(),
            succeeded: self.shared.counters.succeeded.load(Ordering::Relaxed),
            dropped: self.shared.counters.dropped.load(Ordering::Relaxed),
            ignored: self.shared.counters.ignored.load(Ordering::Relaxed),
            waiters: self.shared.waiters.load(Ordering::Relaxed),
            algorithm_panics: self
                .shared
                .counters
                .algorithm_panics
                .load(Ordering::Relaxed),
        }
    }
}
