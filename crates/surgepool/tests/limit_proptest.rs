//! Property: under any sequence of acquires, releases (with any outcome, or a plain drop),
//! manual limit changes and clock advances, for every algorithm, admission never exceeds the
//! limit in force at admission time, every permit is released exactly once, and the
//! counters add up.

use std::time::Duration;

use proptest::prelude::*;
use surgepool::limit::{Limit, Limiter, Permit};

#[derive(Debug, Clone)]
enum Op {
    TryAcquire,
    /// Release the held permit at this index (modulo the number held).
    Release(usize, Outcome),
    SetLimit(usize),
    Advance(u64),
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Success,
    SuccessWithLatency(u64),
    Dropped,
    Ignore,
    Drop,
}

fn op() -> impl Strategy<Value = Op> {
    let outcome = prop_oneof![
        Just(Outcome::Success),
        (0u64..200).prop_map(Outcome::SuccessWithLatency),
        Just(Outcome::Dropped),
        Just(Outcome::Ignore),
        Just(Outcome::Drop),
    ];
    prop_oneof![
        4 => Just(Op::TryAcquire),
        4 => (any::<usize>(), outcome).prop_map(|(i, o)| Op::Release(i, o)),
        1 => (0usize..12).prop_map(Op::SetLimit),
        1 => (0u64..50).prop_map(Op::Advance),
    ]
}

fn limit() -> impl Strategy<Value = Limit> {
    prop_oneof![
        (1usize..8).prop_map(Limit::fixed),
        Just(Limit::adaptive_builder().initial(3).build().unwrap()),
        Just(
            Limit::adaptive_builder()
                .initial(2)
                .probe_interval(Duration::from_millis(20))
                .build()
                .unwrap()
        ),
        Just(Limit::aimd_builder().min(1).initial(3).build().unwrap()),
        Just(Limit::vegas_builder().initial(3).build().unwrap()),
        Just(
            Limit::gradient2_builder()
                .min(1)
                .initial(3)
                .build()
                .unwrap()
        ),
    ]
}

fn check(limit: Limit, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let limiter = Limiter::new(limit).unwrap();
        let mut held: Vec<Permit> = Vec::new();
        let mut acquired = 0u64;
        for op in ops {
            match op {
                Op::TryAcquire => {
                    let (limit, in_flight) = (limiter.limit(), limiter.in_flight());
                    match limiter.try_acquire() {
                        Some(permit) => {
                            prop_assert!(in_flight < limit, "{in_flight} >= limit {limit}");
                            held.push(permit);
                            acquired += 1;
                        }
                        None => prop_assert!(in_flight >= limit, "refused under the limit"),
                    }
                }
                Op::Release(i, outcome) if !held.is_empty() => {
                    let permit = held.swap_remove(i % held.len());
                    match outcome {
                        Outcome::Success => permit.success(),
                        Outcome::SuccessWithLatency(ms) => {
                            permit.success_with_latency(Duration::from_millis(ms))
                        }
                        Outcome::Dropped => permit.dropped(),
                        Outcome::Ignore => permit.ignore(),
                        Outcome::Drop => drop(permit),
                    }
                    prop_assert!(limiter.limit() >= 1);
                }
                Op::Release(..) => {}
                Op::SetLimit(n) => limiter.set_limit(n),
                Op::Advance(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
            }
            prop_assert_eq!(limiter.in_flight(), held.len());
        }
        drop(held);
        let stats = limiter.stats();
        prop_assert_eq!(stats.in_flight, 0);
        prop_assert_eq!(stats.succeeded + stats.dropped + stats.ignored, acquired);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn admission_respects_the_limit_and_every_permit_comes_back(
        limit in limit(),
        ops in prop::collection::vec(op(), 0..300),
    ) {
        check(limit, ops)?;
    }
}

/// Many samples with the clock moving make the adaptive algorithms change the limit a lot;
/// the same properties must hold throughout.
#[test]
fn long_random_runs_keep_the_accounting() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(16));
    runner
        .run(
            &(limit(), prop::collection::vec(op(), 2_000..4_000)),
            |(limit, ops)| check(limit, ops),
        )
        .unwrap();
}
