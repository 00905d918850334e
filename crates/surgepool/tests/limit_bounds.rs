//! Every algorithm keeps its limit within `[min, max]` whatever it is fed (clamped after
//! rounding), and no knob or sample can make a public call panic: huge `Duration`s are
//! refused at build time or saturate.

use std::time::Duration;

use proptest::prelude::*;
use surgepool::limit::{Limit, Limiter, Permit};

/// One of the four algorithms with random bounds (and, for the float ones, smoothing; for
/// the default, sometimes a latency objective from 1 ns to `Duration::MAX`).
fn bounded_limit() -> impl Strategy<Value = (Limit, usize, usize)> {
    (
        (1usize..40, 0usize..40, 0usize..40, 0usize..5, 1u32..=10),
        prop_oneof![
            Just(Duration::MAX),
            (1u64..200_000_000).prop_map(Duration::from_nanos)
        ],
    )
        .prop_map(|((min, span, at, algorithm, smoothing), slo)| {
            let max = min + span;
            let initial = min + at.min(span);
            let smoothing = f64::from(smoothing) / 10.0;
            let limit = match algorithm {
                0 | 4 => {
                    let builder = Limit::adaptive_builder()
                        .min(min)
                        .max(max)
                        .initial(initial)
                        .smoothing(smoothing)
                        .probe_interval(Duration::from_millis(30));
                    if algorithm == 4 {
                        builder.slo(slo).build()
                    } else {
                        builder.build()
                    }
                }
                1 => Limit::aimd_builder()
                    .min(min)
                    .max(max)
                    .initial(initial)
                    .build(),
                2 => Limit::vegas_builder()
                    .min(min)
                    .max(max)
                    .initial(initial)
                    .smoothing(smoothing)
                    .build(),
                _ => Limit::gradient2_builder()
                    .min(min)
                    .max(max)
                    .initial(initial)
                    .smoothing(smoothing)
                    .build(),
            };
            (limit.unwrap(), min, max)
        })
}

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    Release(usize, u8, u64),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Acquire),
        // Latencies from 0 to about 50 days: the extremes must not overflow anything.
        4 => (any::<usize>(), 0u8..4, prop_oneof![0u64..100, any::<u32>().prop_map(u64::from)])
            .prop_map(|(i, how, ms)| Op::Release(i, how, ms)),
        1 => (0u64..100).prop_map(Op::Advance),
    ]
}

fn check(limit: Limit, min: usize, max: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let limiter = Limiter::new(limit).unwrap();
        let mut held: Vec<Permit> = Vec::new();
        for op in ops {
            match op {
                Op::Acquire => held.extend(limiter.try_acquire()),
                Op::Release(i, how, ms) if !held.is_empty() => {
                    let permit = held.swap_remove(i % held.len());
                    match how {
                        0 => permit.success(),
                        1 => permit.success_with_latency(Duration::from_millis(ms)),
                        2 => permit.dropped(),
                        _ => permit.success_with_latency(Duration::MAX),
                    }
                }
                Op::Release(..) => {}
                Op::Advance(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
            }
            let limit = limiter.limit();
            prop_assert!(
                (min..=max).contains(&limit),
                "limit {limit} outside [{min}, {max}]"
            );
        }
        prop_assert_eq!(limiter.stats().algorithm_panics, 0);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_algorithm_reports_a_limit_within_its_bounds(
        (limit, min, max) in bounded_limit(),
        ops in prop::collection::vec(op(), 0..400),
    ) {
        check(limit, min, max, ops)?;
    }
}

/// The review's case: Vegas with `min` 3 reported 2, because smoothing left the estimate at
/// 2.999… and the whole limit was taken by truncation, after the clamp.
#[test]
fn vegas_never_rounds_below_its_min() {
    let limit = Limit::vegas_builder()
        .min(3)
        .initial(3)
        .smoothing(0.3)
        .build()
        .unwrap();
    let limiter = Limiter::new(limit).unwrap();
    for _ in 0..20 {
        limiter.try_acquire().unwrap().dropped();
        assert!(limiter.limit() >= 3, "{:?}", limiter.stats());
    }
}

/// `probe_interval(Duration::MAX)` built, then overflowed at the first decision, inside
/// `Permit::success` (and a pool's `finish`). It is refused now, naming the setting.
#[test]
fn huge_durations_are_refused_at_build_time() {
    let err = Limit::adaptive_builder()
        .probe_interval(Duration::MAX)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "probe_interval");
    assert!(err.to_string().contains("24 h"), "{err}");
    // "Never times out" is meaningful for AIMD and involves no arithmetic: accepted.
    assert!(Limit::aimd_builder().timeout(Duration::MAX).build().is_ok());
}

/// The longest accepted interval with full jitter, and samples with absurd latencies: many
/// windows' worth of `success` calls never panic and the limit stays within bounds.
#[tokio::test(start_paused = true)]
async fn the_largest_accepted_knobs_never_panic_in_success() {
    let limit = Limit::adaptive_builder()
        .probe_interval(Duration::from_secs(24 * 3600))
        .probe_jitter(1.0)
        .tolerance(100.0)
        .max(usize::MAX)
        .slo(Duration::MAX)
        .build()
        .unwrap();
    let limiter = Limiter::new(limit).unwrap();
    for i in 0..5_000u64 {
        let permits: Vec<_> = std::iter::from_fn(|| limiter.try_acquire())
            .take(64)
            .collect();
        tokio::time::advance(Duration::from_millis(1)).await;
        for (j, p) in permits.into_iter().enumerate() {
            match (i + j as u64) % 3 {
                0 => p.success(),
                1 => p.success_with_latency(Duration::MAX),
                _ => p.success_with_latency(Duration::ZERO),
            }
        }
    }
    let stats = limiter.stats();
    assert_eq!(stats.algorithm_panics, 0);
    assert_eq!(stats.in_flight, 0);
    assert!(stats.limit >= 1);
    let aimd = Limit::aimd_builder()
        .min(1)
        .max(usize::MAX)
        .initial(usize::MAX - 1)
        .build()
        .unwrap();
    let limiter = Limiter::new(aimd).unwrap();
    limiter.set_limit(usize::MAX);
    for _ in 0..3 {
        let p = limiter.try_acquire().unwrap();
        p.success(); // +1 at usize::MAX must saturate
    }
    assert_eq!(limiter.stats().algorithm_panics, 0);
}
