//! `AdaptiveBuilder::slo`: where the default stops at the latency guard although callers
//! would still be served within their SLO, an SLO lets the limit go as far as goodput
//! within it still grows (deterministic simulation on paused tokio time, harness in
//! `sim/`).
//!
//! The server: every job admitted slows the others a little (`S × (1 + n / 1000)`: two
//! cores shared with other work), so the RTT rises from the first slot on and goodput
//! `n / (S (1 + n / 1000))` keeps growing, ever more slowly, toward 50,000/s. The default
//! stops where one more slot buys less than half its share of goodput (its bar, `gain`):
//! median 985 slots, RTT 39.7 ms, 24,811/s. With an SLO of 60 ms the climber keeps moves
//! while goodput within it grows by a tenth of their share, and the guard stops it at a
//! mean of ¾ of the SLO (45 ms, about 1,250 slots): median 1,206, RTT 44.1 ms, 27,335/s.
//!
//! `SIM_TRACE=1 cargo test --test limit_slo -- --nocapture` prints trajectories.

mod sim;

use std::time::Duration;

use sim::{Server, Sim, S};
use surgepool::limit::Limit;

const CONTENTION: f64 = 1000.0;

/// The median limit from 5 s to 30 s, and the RTT the model gives at it.
async fn settle(limit: Limit, name: &str) -> (usize, f64) {
    let mut server = Server::new(1_000_000);
    server.contention = Some(CONTENTION);
    let mut sim = Sim::new(limit, server, 5_000);
    sim.run(30.0).await;
    let mut limits: Vec<usize> = sim
        .trace
        .iter()
        .filter(|p| p.t >= 5.0)
        .map(|p| p.limit)
        .collect();
    limits.sort_unstable();
    let median = limits[limits.len() / 2];
    let rtt = S.as_secs_f64() * (1.0 + median as f64 / CONTENTION);
    let goodput = median as f64 / rtt;
    println!(
        "{name}: median limit {median} (lowest {}, highest {}), RTT {:.1} ms, goodput {goodput:.0}/s",
        limits[0],
        limits[limits.len() - 1],
        rtt * 1e3
    );
    (median, rtt)
}

#[tokio::test(start_paused = true)]
async fn an_slo_lets_the_limit_go_as_far_as_goodput_within_it_grows() {
    let (default, _) = settle(Limit::adaptive(), "default").await;
    let slo = Duration::from_millis(60);
    let (with_slo, rtt) = settle(
        Limit::adaptive_builder().slo(slo).build().unwrap(),
        "slo 60 ms",
    )
    .await;
    assert!(
        with_slo as f64 >= 1.15 * default as f64,
        "with an SLO the limit settled at {with_slo}, without at {default}"
    );
    assert!(
        rtt <= 0.75 * slo.as_secs_f64(),
        "the mean RTT at the limit an SLO chose ({:.1} ms) leaves no room for the tail",
        rtt * 1e3
    );
}

/// An SLO the work cannot meet at any concurrency (20 ms work, a 10 ms SLO): the guard
/// is then the default's, and goodput within the SLO is 0 in every window. The limit
/// must still neither run away nor collapse.
#[tokio::test(start_paused = true)]
async fn an_slo_below_the_service_time_changes_nothing_for_the_worse() {
    let (default, _) = settle(Limit::adaptive(), "default").await;
    let (with_slo, _) = settle(
        Limit::adaptive_builder()
            .slo(Duration::from_millis(10))
            .build()
            .unwrap(),
        "slo 10 ms (unreachable)",
    )
    .await;
    assert!(
        with_slo as f64 >= 0.5 * default as f64 && with_slo as f64 <= 1.5 * default as f64,
        "an unreachable SLO moved the limit from {default} to {with_slo}"
    );
}
