//! `limit_samples`: arbitrary sample streams (RTTs from zero to `Duration::MAX`, drops,
//! ignored outcomes, any number of permits in flight, time jumps) into every adaptive
//! `Limit` algorithm, built from arbitrary settings (NaN, infinities and zero included).
//!
//! Checked: building either fails with an error or gives a working limiter (never a
//! panic); after every sample the limit is within [min, max]; admission follows the
//! limit; `in_flight` and the outcome counters equal the model's.
#![no_main]

mod common;

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use surgepool::limit::{Limiter, Permit};
use surgepool::Limit;

#[derive(Arbitrary, Debug)]
enum Algo {
    Adaptive {
        tolerance: f64,
        smoothing: f64,
        probe_interval: Rtt,
        probe_jitter: f64,
    },
    Aimd {
        backoff_ratio: f64,
        timeout: Rtt,
    },
    Vegas {
        smoothing: f64,
        probe_multiplier: u16,
    },
    Gradient2 {
        smoothing: f64,
        queue_size: u16,
        long_window: u16,
        tolerance: f64,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Rtt {
    Zero,
    Nanos(u16),
    Micros(u32),
    Millis(u32),
    Secs(u64),
    Max,
}

impl Rtt {
    fn duration(self) -> Duration {
        match self {
            Rtt::Zero => Duration::ZERO,
            Rtt::Nanos(n) => Duration::from_nanos(u64::from(n)),
            Rtt::Micros(n) => Duration::from_micros(u64::from(n)),
            Rtt::Millis(n) => Duration::from_millis(u64::from(n)),
            Rtt::Secs(n) => Duration::from_secs(n),
            Rtt::Max => Duration::MAX,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Takes up to n permits (as many as the limit admits).
    Acquire(u8),
    /// Releases permit i with a measured latency.
    SuccessWith(u8, Rtt),
    /// Releases permit i; its latency is the (virtual) time it was held.
    Success(u8),
    Dropped(u8),
    Ignore(u8),
    /// A permit dropped without a word counts as dropped.
    Forget(u8),
    /// Virtual time jumps (a stalled thread, a suspended VM).
    Advance(u32),
    AdvanceSecs(u32),
}

#[derive(Arbitrary, Debug)]
struct Input {
    algo: Algo,
    min: u16,
    initial: u16,
    max: u16,
    ops: Vec<Op>,
}

fn build(input: &Input) -> Option<Limit> {
    let (min, initial, max) = (
        usize::from(input.min),
        usize::from(input.initial),
        usize::from(input.max),
    );
    let built = match input.algo {
        Algo::Adaptive {
            tolerance,
            smoothing,
            probe_interval,
            probe_jitter,
        } => Limit::adaptive_builder()
            .min(min)
            .initial(initial)
            .max(max)
            .tolerance(tolerance)
            .smoothing(smoothing)
            .probe_interval(probe_interval.duration())
            .probe_jitter(probe_jitter)
            .build(),
        Algo::Aimd {
            backoff_ratio,
            timeout,
        } => Limit::aimd_builder()
            .min(min)
            .initial(initial)
            .max(max)
            .backoff_ratio(backoff_ratio)
            .timeout(timeout.duration())
            .build(),
        Algo::Vegas {
            smoothing,
            probe_multiplier,
        } => Limit::vegas_builder()
            .min(min)
            .initial(initial)
            .max(max)
            .smoothing(smoothing)
            .probe_multiplier(usize::from(probe_multiplier))
            .build(),
        Algo::Gradient2 {
            smoothing,
            queue_size,
            long_window,
            tolerance,
        } => Limit::gradient2_builder()
            .min(min)
            .initial(initial)
            .max(max)
            .smoothing(smoothing)
            .queue_size(usize::from(queue_size))
            .long_window(usize::from(long_window))
            .tolerance(tolerance)
            .build(),
    };
    built.ok()
}

async fn run(input: Input) {
    let Some(limit) = build(&input) else {
        return;
    };
    let (min, max) = (usize::from(input.min), usize::from(input.max));
    let limiter = Limiter::new(limit).expect("a limit its builder accepted is valid");
    let mut held: Vec<Permit> = Vec::new();
    let (mut succeeded, mut dropped, mut ignored) = (0u64, 0u64, 0u64);
    let check = |limiter: &Limiter, held: &Vec<Permit>, step: usize| {
        let l = limiter.limit();
        assert!(
            (min..=max).contains(&l),
            "step {step}: limit {l} outside [{min}, {max}] ({:?})",
            input.algo
        );
        assert_eq!(limiter.in_flight(), held.len(), "step {step}");
    };
    check(&limiter, &held, 0);
    for (step, op) in input.ops.into_iter().take(512).enumerate() {
        let pick = |held: &mut Vec<Permit>, i: u8| {
            (!held.is_empty()).then(|| held.swap_remove(usize::from(i) % held.len()))
        };
        match op {
            Op::Acquire(n) => {
                for _ in 0..n % 64 {
                    let room = held.len() < limiter.limit();
                    match limiter.try_acquire() {
                        Some(permit) => {
                            assert!(room, "step {step}: admitted over the limit");
                            held.push(permit);
                        }
                        None => {
                            assert!(!room, "step {step}: refused under the limit");
                            break;
                        }
                    }
                }
            }
            Op::SuccessWith(i, rtt) => {
                if let Some(p) = pick(&mut held, i) {
                    p.success_with_latency(rtt.duration());
                    succeeded += 1;
                }
            }
            Op::Success(i) => {
                if let Some(p) = pick(&mut held, i) {
                    p.success();
                    succeeded += 1;
                }
            }
            Op::Dropped(i) => {
                if let Some(p) = pick(&mut held, i) {
                    p.dropped();
                    dropped += 1;
                }
            }
            Op::Ignore(i) => {
                if let Some(p) = pick(&mut held, i) {
                    p.ignore();
                    ignored += 1;
                }
            }
            Op::Forget(i) => {
                if let Some(p) = pick(&mut held, i) {
                    drop(p);
                    dropped += 1;
                }
            }
            Op::Advance(ms) => tokio::time::advance(Duration::from_millis(u64::from(ms))).await,
            Op::AdvanceSecs(s) => tokio::time::advance(Duration::from_secs(u64::from(s))).await,
        }
        check(&limiter, &held, step);
        let stats = limiter.stats();
        assert_eq!(
            (stats.succeeded, stats.dropped, stats.ignored),
            (succeeded, dropped, ignored),
            "step {step}"
        );
    }
}

fuzz_target!(|input: Input| common::run_paused(run(input)));
