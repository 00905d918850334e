//! Deterministic simulations of every limit algorithm against a server with a hidden
//! capacity (paused tokio time; the harness, shared with `limit_robustness.rs`, is in
//! `sim/mod.rs`).
//!
//! The server: `K` jobs run at full speed; past the knee they share the capacity, so a job
//! admitted with `n` in flight takes `S × max(1, n / K)` (processor sharing, as CPU work on
//! `K` cores), with ±10 % noise. The *CPU-like* model has a small knee (`K` = 8 or 16 cores,
//! S = 20 ms); the *waiting* model has a large one (`K` = 2000: sleeps are cheap until the
//! machine saturates). Clients form a closed loop far larger than the knee: every finished
//! job is immediately replaced, so the limit is always what holds the work back.
//!
//! Each test states its budget and asserts where the limit sits afterwards: the median of
//! the limit sampled every 10 ms over the stated span, and the share of that time it spent
//! within the band. Run with `SIM_TRACE=1 cargo test --test limit_simulation -- --nocapture`
//! to print the trajectories.

mod sim;

use sim::{clients, Drift, Server, Sim, S};
use surgepool::limit::Limit;

fn cpu(knee: usize) -> Server {
    Server::new(knee)
}

// ---- the default: Limit::adaptive() ------------------------------------------------------

/// CPU-like work (knee = cores): the default settles on the core count. Budget: 5 000
/// samples (≈ 6 s at k = 8, 3 s at k = 16, 25 s at k = 2, where jobs are 20 ms and only two
/// run at once). Measured (tolerance 1.75, as with 1.5): median exactly k for k = 2, 8,
/// 16, within 10 % for 94 %, 76 %, 84 % of the time (the rest are its probes one step
/// either side). At k = 2 a test of 1 halves the goodput for two windows: the climber
/// repeats a large down-move rejected from the same limit 4 times more rarely, which took
/// k = 2 from 89 % to 94 % (asserted: ≥ 92 %).
#[tokio::test(start_paused = true)]
async fn adaptive_settles_on_the_core_count_for_cpu_work() {
    for (knee, budget, secs, min_within) in [
        (2usize, 1_000, 60.0, 0.92),
        (8, 2_000, 30.0, 0.6),
        (16, 4_000, 30.0, 0.6),
    ] {
        let mut sim = Sim::new(Limit::adaptive(), cpu(knee), clients(knee));
        sim.run(secs).await;
        let name = format!("adaptive, cpu k={knee}");
        let s = sim.settled(&name, budget, secs, knee as f64, 0.10);
        s.assert_near(&name, knee as f64, 0.10);
        assert!(s.within >= min_within, "{name}: {s:?}");
    }
}

/// Waiting work (latency flat up to 2000 in flight): from its initial limit (the machine's
/// parallelism) the default doubles while goodput doubles, reaches the knee in about a
/// second, then holds it. Budget: 200 000 samples (≈ 2.5 s). Measured: within 10 % of 2000
/// after 0.54 s; median 2048 and within 10 % 98 % of the time after (0.68 s before slow
/// start kept a clear doubling without waiting for the sample floor; 0.63 s before rises of
/// more than 64 slots were paced).
#[tokio::test(start_paused = true)]
async fn adaptive_finds_thousands_for_waiting_work_within_seconds() {
    let knee = 2000usize;
    let mut sim = Sim::new(Limit::adaptive(), Server::new(knee), clients(knee));
    sim.run(8.0).await;
    let reached = sim
        .first_within(0.0, knee as f64, 0.10)
        .expect("never reached the knee");
    println!("adaptive, waiting k={knee}: within 10% after {reached:.2} s");
    assert!(reached < 2.0, "reached the knee only after {reached} s");
    let s = sim.settled("adaptive, waiting k=2000", 200_000, 8.0, knee as f64, 0.10);
    s.assert_near("adaptive waiting", knee as f64, 0.10);
    assert!(s.within >= 0.9, "{s:?}");
}

/// Noisy service times (uniform ±50 % per job instead of ±10 %): the latency guard only
/// acts on a rise larger than two standard errors of the window's mean, and a measure window
/// grows until its goodput's noise is well below the effect of the move under test
/// (`8 cv² / effect²` samples, at most 1024), so noise is read neither as a queue nor as a
/// goodput change (a window that already rejects its move beyond the noise ends early).
/// Measured (the default seed, tolerance 1.75): median 2, 16 and 1004 (k = 2, 16, 1000),
/// 96 %, 81 % and 100 % of the time within 10 %; lowest 1, 8, 954. Over the default seed
/// and `SIM_SEED=1..12`: k = 16 within 10 % 81–97 % of the time, lowest 8 on every draw.
#[tokio::test(start_paused = true)]
async fn adaptive_is_not_fooled_by_noisy_service_times() {
    for (knee, secs, band) in [(2usize, 30.0, 0.10), (16, 30.0, 0.10), (1000, 6.0, 0.10)] {
        let mut server = Server::new(knee);
        server.noise_amp = 0.5;
        let mut sim = Sim::new(Limit::adaptive(), server, clients(knee));
        sim.run(secs).await;
        let name = format!("adaptive, ±50% noise, k={knee}");
        let s = sim.settled(&name, (knee * 100) as u64, secs, knee as f64, band);
        s.assert_near(&name, knee as f64, band);
        // Once settled, noise never collapses it: a down-move's step doubled after each
        // kept move until one took the limit to the minimum, and right after a cut the
        // goodput of the jobs still running from before made that look free (the lab saw
        // 607 -> 2 in 0.1 s). Regression for both.
        assert!(s.lowest * 2 >= knee, "{name}: fell to {}", s.lowest);
    }
}

/// The capacity halves mid-run (k = 16 → 8 at 15 s; k = 1000 → 500 at 6 s): the latency
/// guard cuts at once. Stated: within 10 % of the new knee within 1 s, and settled there
/// (median within 10 %) from 2 s after the change. Measured (tolerance 1.75): 0.16 s (1000)
/// and 0.19 s (16) to first reach the band; 0.27 s and 0.71 s before the climber's first
/// move after a run of cuts went to where the queue would vanish (other noise seeds,
/// `SIM_SEED=1..12`: 0.14–0.17 s and 0.19–0.38 s, one pair 1.57 s).
#[tokio::test(start_paused = true)]
async fn adaptive_follows_when_capacity_halves() {
    for (knee, change, secs) in [(16usize, 15.0, 25.0), (1000, 6.0, 12.0)] {
        let mut server = Server::new(knee);
        let k = knee as f64;
        server.knee = Box::new(move |t| if t < change { k } else { k / 2.0 });
        let mut sim = Sim::new(Limit::adaptive(), server, clients(knee));
        sim.run(secs).await;
        let name = format!("adaptive, k={knee} halving at {change} s");
        let before = sim.time_of_sample(0).max(change - 3.0);
        let s = sim.settled(
            &format!("{name}, before"),
            sim.samples_at(before),
            change,
            k,
            0.10,
        );
        s.assert_near(&name, k, 0.10);
        let reached = sim
            .first_within(change, k / 2.0, 0.10)
            .expect("never followed");
        println!(
            "{name}: within 10% of the new knee {:.2} s after",
            reached - change
        );
        assert!(
            reached - change < 1.0,
            "{name}: took {} s",
            reached - change
        );
        let after = sim.samples_at(change + 2.0);
        let s = sim.settled(&format!("{name}, after"), after, secs, k / 2.0, 0.10);
        s.assert_near(&name, k / 2.0, 0.10);
    }
}

/// The service time doubles for a while (the work got slower, not the machine smaller: the
/// knee in jobs stays) and then returns. A pure latency gradient would read the slowdown as
/// a queue and cut to the minimum; the default notices that cutting does not lower the
/// latency, takes the slower RTT as its base, and keeps the limit near the knee throughout.
/// Stated and asserted: median within 20 % of the knee while slow, within 10 % from 2 s
/// after the return.
#[tokio::test(start_paused = true)]
async fn adaptive_recovers_after_the_service_time_doubles() {
    for (knee, slow, secs) in [(16usize, (10.0, 20.0), 30.0), (1000, (4.0, 8.0), 12.0)] {
        let mut server = Server::new(knee);
        server.service = Box::new(move |t| {
            if (slow.0..slow.1).contains(&t) {
                S * 2
            } else {
                S
            }
        });
        let mut sim = Sim::new(Limit::adaptive(), server, clients(knee));
        sim.run(secs).await;
        let k = knee as f64;
        let name = format!("adaptive, k={knee} twice as slow in {slow:?}");
        let during = sim.samples_at(slow.0 + 1.0);
        let s = sim.settled(&format!("{name}, during"), during, slow.1, k, 0.10);
        s.assert_near(&name, k, 0.20);
        let after = sim.samples_at(slow.1 + 2.0);
        let s = sim.settled(&format!("{name}, after"), after, secs, k, 0.10);
        s.assert_near(&name, k, 0.10);
    }
}

/// Callers bring less work than the machine could take (10 clients, knee 100): the limit
/// neither runs away (goodput cannot follow, so growth stops) nor holds the work back.
#[tokio::test(start_paused = true)]
async fn adaptive_neither_runs_away_nor_throttles_when_app_limited() {
    let mut sim = Sim::new(
        Limit::adaptive_builder().initial(2).build().unwrap(),
        Server::new(100),
        10,
    );
    sim.run(30.0).await;
    let s = sim.settled("adaptive, 10 clients, k=100", 2_000, 30.0, 10.0, 0.5);
    let max = sim.trace.iter().map(|p| p.limit).max().unwrap();
    println!("max limit {max}");
    assert!(s.median >= 10, "holds work back: {s:?}");
    assert!(max <= 40, "ran away to {max}");
}

// ---- the anchors: Netflix's algorithms with their published defaults ------------------------
//
// Bounds are widened to min 1, max 10 000 (Netflix's AIMD/Gradient2 default to min 20, max
// 200, Vegas to max 1000, which would decide the outcome by themselves); every other setting
// is the published default. Models: CPU-like k = 16 and waiting k = 1000, ±10 % noise.
// Where an algorithm does not settle within 20 % of the knee, the test says so and asserts
// where it does settle, so a change in behaviour shows up.

fn anchor_bounds(limit: &str) -> Limit {
    match limit {
        "aimd" => Limit::aimd_builder().min(1).max(10_000).build(),
        "vegas" => Limit::vegas_builder().max(10_000).build(),
        "gradient2" => Limit::gradient2_builder().min(1).max(10_000).build(),
        _ => unreachable!(),
    }
    .unwrap()
}

/// AIMD is loss-based: it needs drops. With a server that rejects at once (a fast 503)
/// above 1.2 × its knee, it saw-tooths between 0.9 × and 1 × the rejection point.
/// k = 16: median 18 (+12 %), within 20 % ✓. k = 1000: median ≈ 700–750 (−25..−30 %):
/// NOT within 20 %, because every rejection multiplies the limit by 0.9 and a round's worth
/// of rejections arrives together (Netflix's AIMD backs off per drop, not per round trip).
#[tokio::test(start_paused = true)]
async fn aimd_with_fast_rejections() {
    for (knee, secs, band) in [(16usize, 30.0, (0.0, 0.20)), (1000, 8.0, (-0.45, -0.10))] {
        let mut server = Server::new(knee);
        server.reject_above = Some(1.2);
        let mut sim = Sim::new(anchor_bounds("aimd"), server, clients(knee));
        sim.run(secs).await;
        let name = format!("aimd, fast 503 above 1.2k, k={knee}");
        let s = sim.settled(&name, (knee * 200) as u64, secs, knee as f64, 0.20);
        let err = s.median as f64 / knee as f64 - 1.0;
        assert!(
            (band.0..=band.1).contains(&err),
            "{name}: {s:?}, off by {err:.2}"
        );
    }
}

/// With only a slow loss signal (clients give up after 1.5 × the service time), AIMD's
/// per-drop backoff collapses: a whole round of timeouts arrives at once and multiplies the
/// limit by 0.9 each. Measured median ≈ 5 for k = 16: far below the knee.
#[tokio::test(start_paused = true)]
async fn aimd_with_slow_timeouts_collapses() {
    let knee = 16;
    let mut sim = Sim::new(anchor_bounds("aimd"), cpu(knee), clients(knee));
    sim.timeout = Some(S.mul_f64(1.5));
    sim.run(30.0).await;
    let s = sim.settled("aimd, 1.5 S timeouts, k=16", 3_000, 30.0, knee as f64, 0.20);
    assert!(s.median <= knee / 2, "{s:?}");
}

/// Noise that every job of a window shares (`Drift`: the service time × a factor drawn
/// afresh every 40 ms, uniform within ±20 %, beside the usual ±10 % per job): windows of one
/// round (20 ms) at one limit then differ by up to ±20 % in goodput while each window's own
/// standard error says well under 1 %, as the lab's HTTP server's did beside 1,024 clients
/// retrying every 503. Each 5 % move is then close to a coin toss; what keeps the limit
/// near the knee is that a wrong toss costs little there, and that the latency guard
/// answers the moves past the knee that noise lets through. Judged against `Limit::fixed`
/// at the knee on the same draws of the drift: the SLO goodput over 5–20 s at least 0.9×
/// its (the bound is for the default seed), the median limit from 0.8× the knee to 1.2×
/// (1.35× at k = 16, see below). Measured (the default seed), k = 16, 400, 2000: 0.951×,
/// 0.989×, 0.962× the fixed limit's SLO goodput; median limit 17, 431, 2131. Over the
/// default seed and `SIM_SEED=1..12`: mean (worst) 0.983 (0.935)×, 0.972 (0.912)×,
/// 0.980 (0.930)×; medians 16–21, 393–453, 2010–2347. Before void verdicts
/// (`climb::void_verdict`, 2026-12-06) a window that ran slower than the move could
/// explain rejected the up-move it measured, and
/// shared noise cost the default up to a fifth of its goodput: 0.982 (0.950)×,
/// 0.940 (0.872)×, 0.923 (0.805)×.
#[tokio::test(start_paused = true)]
async fn adaptive_keeps_the_knee_when_noise_is_shared_by_a_window() {
    let server = |knee: usize| {
        let mut server = Server::new(knee);
        server.drift = Some(Drift::new(0.04, 0.2));
        server
    };
    for knee in [16usize, 400, 2000] {
        let mut sim = Sim::new(Limit::adaptive(), server(knee), clients(knee));
        sim.run(20.0).await;
        let name = format!("adaptive, ±20% drift per 40 ms, k={knee}");
        let s = sim.settled(&name, knee as u64 * 50, 20.0, knee as f64, 0.10);
        // Above the knee by up to a third at k = 16 (the medians over 13 draws: 16–21):
        // a rejection that a slower window decided is void and the move tested again
        // (`climb::void_verdict`), so up-moves get more chances than down-moves; the jobs
        // of those few extra slots queue, in time.
        let above = if knee < 100 { 0.35 } else { 0.20 };
        s.assert_between(&name, knee as f64, 0.20, above);
        let mut fixed = Sim::new(Limit::fixed(knee), server(knee), clients(knee));
        fixed.run(20.0).await;
        let (adaptive, fixed) = (sim.slo_goodput(5.0, 20.0), fixed.slo_goodput(5.0, 20.0));
        let ratio = adaptive / fixed;
        println!("{name}: SLO goodput over 5-20 s {adaptive:.0}/s, {ratio:.3}x fixed({knee})'s");
        assert!(
            ratio >= 0.9,
            "{name}: SLO goodput {ratio:.3}x fixed({knee})'s"
        );
    }
}

/// Vegas keeps α..β = 3..6 jobs queued (log10 L = 1 below 100) by design, so for CPU work
/// it settles above the knee: measured median 22 for k = 16 (+37 %), NOT within 20 %.
/// For waiting work it confuses ±10 % service-time noise with a queue: its per-sample queue
/// estimate `L × (1 − min_rtt / rtt)` reads 0.18 L at the slowest samples, above β = 6 for
/// L > 60, so it stalls near 60 for a knee of 1000, NOT within 20 %.
#[tokio::test(start_paused = true)]
async fn vegas_queues_above_the_cpu_knee_and_stalls_on_noise() {
    let mut sim = Sim::new(anchor_bounds("vegas"), cpu(16), clients(16));
    sim.run(30.0).await;
    let s = sim.settled("vegas, cpu k=16", 5_000, 30.0, 16.0, 0.20);
    assert!((19..=26).contains(&s.median), "{s:?}");

    let mut sim = Sim::new(anchor_bounds("vegas"), Server::new(1000), clients(1000));
    sim.run(8.0).await;
    let s = sim.settled("vegas, waiting k=1000", 2_000, 8.0, 1000.0, 0.20);
    assert!(s.median <= 100, "{s:?}");
}

/// Without noise, Vegas meets the drift trap: its periodic probe takes the current, queued
/// RTT as the no-load RTT, the queue estimate drops to 0, it grows by β, and the next probe
/// takes an even more queued RTT. Measured with 3 050 clients and a knee of 100: median
/// 6 529, bounded only by its app-limited guard (it stops growing at 2 × in-flight).
#[tokio::test(start_paused = true)]
async fn vegas_baseline_drifts_up_without_noise() {
    let mut server = Server::new(100);
    server.noise_amp = 0.0;
    let mut sim = Sim::new(anchor_bounds("vegas"), server, clients(1000));
    sim.run(20.0).await;
    let s = sim.settled("vegas, cpu k=100, no noise", 20_000, 20.0, 100.0, 0.20);
    assert!(s.median >= 1_000, "{s:?}");
}

/// Gradient2 compares each RTT with the *average* RTT, which follows latency up; at steady
/// state its gradient is 1 and it adds `smoothing × queue_size` per sample until one RTT is
/// 1.5 × the average. Measured: median 44 for a CPU knee of 16 (2.75×), and the 10 000 cap
/// for waiting work (k = 1000): NOT within 20 % in either model.
#[tokio::test(start_paused = true)]
async fn gradient2_runs_past_the_knee() {
    let mut sim = Sim::new(anchor_bounds("gradient2"), cpu(16), clients(16));
    sim.run(30.0).await;
    let s = sim.settled("gradient2, cpu k=16", 5_000, 30.0, 16.0, 0.20);
    assert!((32..=64).contains(&s.median), "{s:?}");

    let mut sim = Sim::new(anchor_bounds("gradient2"), Server::new(1000), clients(1000));
    sim.run(8.0).await;
    let s = sim.settled("gradient2, waiting k=1000", 50_000, 8.0, 1000.0, 0.20);
    assert!(s.median >= 3000, "{s:?}");
}

// ---- a stated latency objective: Limit::adaptive_builder().slo(..) ------------------------

/// A soft knee (past 100 jobs a job takes `S × load^0.7`: each added slot still buys 0.3 of
/// its proportional share of goodput, at a rising latency) and an objective of 3 × S. The
/// default stops at the knee (one more slot must buy half its share); with the objective
/// stated the limit climbs while the jobs served within it still grow, and stops where the
/// latency guard (1.75 × the base) does: about 2.2 × the knee, where every job still takes
/// under 2 × S. Measured over the last 10 s of 20: the default median 100, SLO goodput
/// 4,979/s; with the objective median 211, 6,361/s (1.28×), every job in time.
#[tokio::test(start_paused = true)]
async fn with_a_latency_objective_the_limit_climbs_past_a_soft_knee() {
    let knee = 100usize;
    let soft = || {
        let mut server = Server::new(knee);
        server.soft = Some(0.7);
        server
    };
    let mut plain = Sim::new(Limit::adaptive(), soft(), clients(4 * knee));
    plain.run(20.0).await;
    let plain_settled = plain.settled("adaptive, soft knee 100", 20_000, 20.0, 100.0, 0.10);
    let slo = Limit::adaptive_builder().slo(S * 3).build().unwrap();
    let mut stated = Sim::new(slo, soft(), clients(4 * knee));
    stated.run(20.0).await;
    let stated_settled = stated.settled("adaptive + slo, soft knee 100", 20_000, 20.0, 220.0, 0.15);
    let (before, after) = (
        plain.slo_goodput(10.0, 20.0),
        stated.slo_goodput(10.0, 20.0),
    );
    let served = (stated.samples_at(20.0) - stated.samples_at(10.0)) as f64 / 10.0;
    println!(
        "soft knee: SLO goodput {before:.0}/s without the objective, {after:.0}/s with it \
         ({:.2}x), {:.1}% of its jobs in time",
        after / before,
        100.0 * after / served
    );
    plain_settled.assert_near("adaptive, soft knee", knee as f64, 0.15);
    assert!(
        stated_settled.median >= 2 * knee - knee / 4,
        "{stated_settled:?}"
    );
    assert!(after >= 1.15 * before, "{after:.0}/s against {before:.0}/s");
    assert!(
        after >= 0.99 * served,
        "{after:.0}/s of {served:.0}/s in time"
    );
}

/// Sharp knees (CPU work on 2 and 16 cores): past the knee goodput does not grow at all,
/// so an objective the extra latency does not break (3 × S) changes little: the limit
/// still settles on the core count. Measured: median 2 and 16, within 10 % 96 % and 97 % of
/// the time (without the objective, `adaptive_settles_on_the_core_count_for_cpu_work`: 94 %
/// and 84 %).
#[tokio::test(start_paused = true)]
async fn with_a_latency_objective_the_limit_still_settles_on_a_sharp_knee() {
    for (knee, budget, secs, min_within) in [(2usize, 1_000, 60.0, 0.85), (16, 4_000, 30.0, 0.6)] {
        let slo = Limit::adaptive_builder().slo(S * 3).build().unwrap();
        let mut sim = Sim::new(slo, cpu(knee), clients(knee));
        sim.run(secs).await;
        let name = format!("adaptive + slo, cpu k={knee}");
        let s = sim.settled(&name, budget, secs, knee as f64, 0.10);
        s.assert_near(&name, knee as f64, 0.10);
        assert!(s.within >= min_within, "{name}: {s:?}");
    }
}

/// Waiting work whose service time triples halfway (a downstream got three times slower,
/// the lab's `--scenario slowdown`): the machine's capacity in jobs per second stays, so the
/// knee in jobs triples with the service time (Little's law), 700 → 2100. The default
/// notices that its cuts do not lower the latency, takes the slower RTT as its base, and
/// slow start goes from the limit before the cuts up to that limit × the new base over the
/// old, where the climber's steps take over. Measured (the default seed and
/// `SIM_SEED=1..12`): highest limit after the change 2,216–2,351, within 10 % of 2,100
/// 94–100 % of the time from 2 s after it. Before the bound slow start doubled on to 5,600
/// on every draw, and the limit was within 10 % 48–52 % of that time.
#[tokio::test(start_paused = true)]
async fn adaptive_follows_a_knee_that_triples_with_the_service_time() {
    let (knee, change, secs) = (700.0, 4.0, 10.0);
    let mut server = Server::new(700);
    server.knee = Box::new(move |t| if t < change { knee } else { 3.0 * knee });
    server.service = Box::new(move |t| if t < change { S } else { S * 3 });
    let mut sim = Sim::new(Limit::adaptive(), server, clients(3 * 700));
    sim.run(secs).await;
    let name = "adaptive, knee 700 → 2100 with the service time at 4 s";
    let highest = sim
        .trace
        .iter()
        .filter(|p| p.t >= change)
        .map(|p| p.limit)
        .max()
        .unwrap();
    let reached = sim
        .first_within(change, 3.0 * knee, 0.20)
        .expect("never reached the new knee");
    println!(
        "{name}: highest limit after it {highest}, within 20 % of 2100 {:.2} s after",
        reached - change
    );
    assert!(
        reached - change < 1.0,
        "{name}: took {} s",
        reached - change
    );
    assert!(
        highest as f64 <= 1.25 * 3.0 * knee,
        "{name}: overshot to {highest}"
    );
    let s = sim.settled(name, sim.samples_at(change + 2.0), secs, 3.0 * knee, 0.10);
    s.assert_near(name, 3.0 * knee, 0.10);
    assert!(s.within >= 0.85, "{name}: {s:?}");
}
