//! The interface every limit algorithm implements (Netflix concurrency-limits' shape:
//! `onSample(startTime, rtt, inflight, didDrop) -> newLimit`), and the small helpers they share.

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
    /// Admissions refused so far (a running count: a difference between two samples is the
    /// demand the limit turned away in between, which callers that honour `Retry-After`
    /// take away from the goodput an algorithm sees).
    pub(crate) refused: u64,
}

/// A limit algorithm: takes samples, returns the new limit (always at least 1).
///
/// `update` runs under the limiter's mutex once per finished job, so implementations keep it
/// O(1) and allocation-free.
pub(crate) trait Algorithm: Send + Debug + 'static {
    fn update(&mut self, sample: &Sample) -> usize;
}

/// A tiny deterministic PRNG (xorshift64*) for probe jitter: no dependency, no allocation,
/// and reproducible in tests.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator with a fixed seed, so that runs (and tests) are reproducible. Limiters
    /// still do not probe in lock-step in practice: each schedules its probes from its own
    /// first samples.
    pub(crate) fn new() -> Rng {
        Rng::with_seed(0x05ee_d0f5_u64)
    }

    pub(crate) fn with_seed(seed: u64) -> Rng {
        // splitmix64 scrambles the seed so that nearby seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(z | 1)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let bits = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        bits as f64 / (1u64 << 53) as f64
    }
}

/// Rounds a float limit down to a whole limit, then clamps it to `[min, max]`: clamping
/// after rounding is what keeps every reported limit within the bounds. A hair of slack
/// (1e-9) keeps float noise (5.999999999 for 6) from costing a whole slot.
pub(crate) fn whole(limit: f64, min: usize, max: usize) -> usize {
    if limit.is_nan() {
        return min;
    }
    // `as` saturates: +inf and huge values become usize::MAX, then `max`.
    ((limit + 1e-9).floor().max(0.0) as usize).clamp(min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_uniform_enough_and_deterministic() {
        let mut a = Rng::with_seed(7);
        let mut b = Rng::with_seed(7);
        let mut sum = 0.0;
        for _ in 0..10_000 {
            let x = a.next_f64();
            assert_eq!(x, b.next_f64());
            assert!((0.0..1.0).contains(&x));
            sum += x;
        }
        let mean = sum / 10_000.0;
        assert!((0.45..0.55).contains(&mean), "mean {mean}");
    }

    #[test]
    fn whole_clamps_and_survives_nan() {
        assert_eq!(whole(f64::NAN, 3, 10), 3);
        assert_eq!(whole(-5.0, 1, 10), 1);
        assert_eq!(whole(7.9, 1, 10), 7);
        assert_eq!(whole(1e30, 1, 10), 10);
    }
}
