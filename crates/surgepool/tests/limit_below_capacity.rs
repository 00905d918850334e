//! Below capacity the default limit must shed (almost) nothing: open-loop Poisson arrivals
//! at half the simulated server's capacity, where every request could be served at once
//! (deterministic simulation on paused tokio time, harness in `sim/`).
//!
//! `SIM_TRACE=1 cargo test --test limit_below_capacity -- --nocapture` prints trajectories.

mod sim;

use sim::{Server, Sim, S};
use surgepool::limit::Limit;

/// Runs the default limit against the waiting model with knee `knee` at `share` of its
/// capacity for `secs`, and returns the share of arrivals after `warm_up` seconds refused.
async fn shed_share(knee: usize, share: f64, secs: f64, warm_up: f64) -> f64 {
    let capacity = knee as f64 / S.as_secs_f64();
    let mut sim = Sim::new(Limit::adaptive(), Server::new(knee), 0);
    let run = sim.run_open(share * capacity, secs).await;
    let refused = run.refused_from(warm_up);
    let arrivals = run.arrivals_from(warm_up);
    let lowest = sim
        .trace
        .iter()
        .filter(|p| p.t >= warm_up)
        .map(|p| p.limit)
        .min()
        .unwrap();
    let highest = sim.trace.iter().map(|p| p.limit).max().unwrap();
    let shed = refused as f64 / arrivals as f64;
    println!(
        "knee {knee}, {share}x capacity: {refused} of {arrivals} refused after {warm_up} s ({:.3} %), \
         {} in the warm-up; limit {lowest}..{highest} after it",
        shed * 100.0,
        run.refused_at.len() - refused,
    );
    shed
}

/// Waiting work (knee 1000, 20 ms: 50,000/s): at 25,000/s about 500 are in flight, with
/// Poisson bursts of a few dozen more; over 40 s the base RTT is re-measured about four
/// times.
#[tokio::test(start_paused = true)]
async fn half_the_capacity_of_waiting_work_is_not_shed() {
    let shed = shed_share(1000, 0.5, 40.0, 3.0).await;
    assert!(shed < 0.001, "shed {:.3} % below capacity", shed * 100.0);
}

/// CPU-like work (knee 16, 20 ms: 800/s): at 400/s about 8 are in flight and bursts are
/// large relative to the limit.
#[tokio::test(start_paused = true)]
async fn half_the_capacity_of_cpu_work_is_not_shed() {
    let shed = shed_share(16, 0.5, 40.0, 3.0).await;
    assert!(shed < 0.001, "shed {:.3} % below capacity", shed * 100.0);
}
