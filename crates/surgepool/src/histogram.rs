//! A latency recorder with the bucket layout of an HDR histogram over 1 ns ..= 1 h at 2
//! significant digits, recorded with a shift and an add: the pools record three latencies
//! per task under their lock, and `hdrhistogram::Histogram::saturating_record` cost ~60
//! instructions each (callgrind), this ~15. Summaries are made by loading the counts into
//! an `hdrhistogram::Histogram` with the same layout, so every figure is what recording
//! into that histogram directly would give (the test below checks the layout matches).

use hdrhistogram::Histogram;

/// One hour in nanoseconds: larger values are clamped (and still counted).
pub(crate) const MAX_TRACKED_NS: u64 = 3_600_000_000_000;

/// Significant decimal digits: every figure is within 1% of the true value.
const SIGNIFICANT_DIGITS: u8 = 2;

/// `log2` of half the sub-buckets: 2 significant digits need 256 sub-buckets per bucket
/// (2 × 10² = 200 values at unit resolution, rounded up to a power of two).
const HALF_MAGNITUDE: u32 = 7;
const HALF: u64 = 1 << HALF_MAGNITUDE;

/// Counts needed to reach `MAX_TRACKED_NS`.
const LEN: usize = index(MAX_TRACKED_NS) + 1;

/// The count index of `nanos` (in `1..=MAX_TRACKED_NS`), as hdrhistogram computes it.
const fn index(nanos: u64) -> usize {
    let bucket = 56 - (nanos | (2 * HALF - 1)).leading_zeros();
    let sub_bucket = nanos >> bucket;
    (((bucket as u64 + 1) << HALF_MAGNITUDE) + sub_bucket - HALF) as usize
}

/// The lowest value that lands at `index`.
fn lowest(index: usize) -> u64 {
    let index = index as u64;
    match (index >> HALF_MAGNITUDE).checked_sub(1) {
        None | Some(0) => index,
        Some(bucket) => ((index & (HALF - 1)) + HALF) << bucket,
    }
}

/// Counts of recorded latencies.
#[derive(Clone)]
pub(crate) struct Recorder {
    counts: Box<[u64]>,
}

impl Recorder {
    pub(crate) fn new() -> Recorder {
        Recorder {
            counts: vec![0; LEN].into_boxed_slice(),
        }
    }

    /// Records `nanos`, clamped to `1..=MAX_TRACKED_NS`.
    pub(crate) fn record(&mut self, nanos: u64) {
        let i = index(nanos.clamp(1, MAX_TRACKED_NS));
        if let Some(count) = self.counts.get_mut(i) {
            *count = count.saturating_add(1);
        }
    }

    /// Calls `f(lowest_nanos, count)` for every bucket that gained counts since `before`
    /// (an earlier copy of this recorder, or every bucket when `None`): exporters publish
    /// the delta of a window without recording each sample twice on the hot path.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn for_each_new(&self, before: Option<&Recorder>, mut f: impl FnMut(u64, u64)) {
        for (i, &count) in self.counts.iter().enumerate() {
            let old = before.and_then(|b| b.counts.get(i).copied()).unwrap_or(0);
            let new = count.saturating_sub(old);
            if new > 0 {
                f(lowest(i), new);
            }
        }
    }

    /// The counts as an HDR histogram, for its statistics.
    pub(crate) fn to_histogram(&self) -> Histogram<u64> {
        let mut h = empty();
        for (i, &count) in self.counts.iter().enumerate() {
            if count > 0 {
                h.saturating_record_n(lowest(i), count);
            }
        }
        h
    }
}

fn empty() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_NS, SIGNIFICANT_DIGITS)
        .expect("static histogram bounds are valid")
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let recorded: u64 = self.counts.iter().sum();
        f.debug_struct("Recorder")
            .field("recorded", &recorded)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn same_bucket_as_hdr(nanos: u64) {
        let h = empty();
        let low = lowest(index(nanos));
        assert!(low <= nanos, "{nanos}: lowest {low}");
        assert_eq!(
            h.highest_equivalent(low),
            h.highest_equivalent(nanos),
            "{nanos} and {low} must share an HDR bucket"
        );
        assert_eq!(h.lowest_equivalent(nanos), low, "{nanos}");
    }

    #[test]
    fn layout_matches_hdrhistogram_at_the_edges() {
        for nanos in [1, 2, 127, 128, 255, 256, 257, 511, 512, 1_000, 1 << 20] {
            same_bucket_as_hdr(nanos);
        }
        same_bucket_as_hdr(MAX_TRACKED_NS);
        assert_eq!(index(MAX_TRACKED_NS), LEN - 1);
    }

    proptest! {
        /// Log-uniform values, so every bucket is as likely as every other.
        #[test]
        fn layout_matches_hdrhistogram(magnitude in 0u32..42, offset in any::<u64>()) {
            let base = 1u64 << magnitude;
            same_bucket_as_hdr((base + offset % base).min(MAX_TRACKED_NS));
        }
    }

    #[test]
    fn summaries_equal_direct_recording() {
        let mut r = Recorder::new();
        let mut direct = empty();
        for nanos in [
            0,
            1,
            99,
            1_000,
            20_000_000,
            20_000_001,
            5_000_000_000,
            u64::MAX,
        ] {
            r.record(nanos);
            direct.saturating_record(nanos.clamp(1, MAX_TRACKED_NS));
        }
        let h = r.to_histogram();
        assert_eq!(h.len(), direct.len());
        assert_eq!(h.max(), direct.max());
        assert_eq!(h.min(), direct.min());
        assert_eq!(h.value_at_quantile(0.5), direct.value_at_quantile(0.5));
        assert_eq!(h.value_at_quantile(0.99), direct.value_at_quantile(0.99));
        assert!((h.mean() - direct.mean()).abs() < 1e-6 * direct.mean());
    }
}
