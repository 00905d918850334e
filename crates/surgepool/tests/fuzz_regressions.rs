//! Minimal reproductions of bugs that the fuzz targets in `fuzz/` found, one test each,
//! named after what broke. A test marked `#[ignore]` still fails on its branch: the comment
//! names the bug and the issue that fixes it; remove the `#[ignore]` with the fix.

use std::time::Duration;

use surgepool::limit::Limiter;
use surgepool::Limit;

/// Found by `limit_samples` (Vegas, min = initial = max = 15677, smoothing 1.04e-13):
/// `estimated = (1 - s) * estimated + s * clamp(new, min, max)` is a convex combination of
/// two values >= min, but in floating point it can land a hair below min (15676.999…), and
/// `as usize` truncates it to 15676: the limit leaves [min, max] after two dropped samples.
/// Issue 10 ("Vegas below min") fixes it.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn vegas_limit_never_goes_below_min_through_smoothing_rounding() {
    let n = 15677;
    let limit = Limit::vegas_builder()
        .min(n)
        .initial(n)
        .max(n)
        .smoothing(1.038_785_615_260_256_2e-13)
        .probe_multiplier(n)
        .build()
        .unwrap();
    let limiter = Limiter::new(limit).unwrap();
    let first = limiter.try_acquire().unwrap();
    let second = limiter.try_acquire().unwrap();
    tokio::time::advance(Duration::from_secs(1_027_473_407)).await;
    // The first sample only sets the no-load RTT; the second, a drop with the same RTT,
    // asks for estimated - log10_root, which the clamp brings back to min.
    first.dropped();
    second.dropped();
    assert!(
        limiter.limit() >= n,
        "limit {} below min {n}",
        limiter.limit()
    );
}
