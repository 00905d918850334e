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
    shed_share_from(Limit::adaptive(), knee, share, secs, warm_up).await
}

/// [`shed_share`] for a given `limit`.
async fn shed_share_from(limit: Limit, knee: usize, share: f64, secs: f64, warm_up: f64) -> f64 {
    let capacity = knee as f64 / S.as_secs_f64();
    let mut sim = Sim::new(limit, Server::new(knee), 0);
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

/// The limit comes out of its warm-up at the mean demand (over HTTP at half the capacity,
/// one lab run in eight left slow start at 140 slots with 131 in flight on average, and
/// shed 6 % of the requests while the limit crept up in small steps as Poisson bursts
/// passed it). From there it must make room for the bursts, not settle where the demand's
/// mean puts it. 10 s like the lab's HTTP run, with no warm-up: starting at the demand,
/// there is nothing to warm up. (Before the climber kept the up-moves that served the
/// refused bursts, the limit hovered at 500–525 for three seconds and refused 0.65 % of
/// the run's requests; over the seven distinct noise draws `SIM_SEED=1..12` then made,
/// 0.03–0.25 %, more than 0.1 % in three. Now 0–0.036 % over the default seed and the
/// twelve distinct draws `SIM_SEED=1..12` makes since.)
#[tokio::test(start_paused = true)]
async fn a_limit_at_the_mean_demand_makes_room_for_its_bursts() {
    let limit = Limit::adaptive_builder().initial(500).build().unwrap();
    let shed = shed_share_from(limit, 1000, 0.5, 10.0, 0.0).await;
    assert!(shed < 0.001, "shed {:.3} % below capacity", shed * 100.0);
}
