//! Deterministic simulations of every limit algorithm against a server with a hidden
//! capacity (paused tokio time; a discrete-event loop drives `Limiter::try_acquire` and
//! releases each permit when its simulated service time has passed on tokio's clock).
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

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use surgepool::limit::{Limit, Limiter, Permit};
use tokio::time::Instant;

const S: Duration = Duration::from_millis(20);

/// xorshift64*: deterministic noise for the simulated server.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The hidden server: its knee and service time, both allowed to change with time.
struct Server {
    knee: Box<dyn Fn(f64) -> f64>,
    service: Box<dyn Fn(f64) -> Duration>,
    noise: Noise,
    /// Relative amplitude of the service-time noise (0.1: ±10 %).
    noise_amp: f64,
    /// If set, a job admitted with more than this × knee in flight is rejected at once
    /// (a fast 503): the loss signal AIMD is built for.
    reject_above: Option<f64>,
}

impl Server {
    fn new(knee: usize) -> Server {
        Server {
            knee: Box::new(move |_| knee as f64),
            service: Box::new(|_| S),
            noise: Noise(0x1234_5678_9ABC_DEF1),
            noise_amp: 0.1,
            reject_above: None,
        }
    }

    /// The job's service time, or `None` when the server rejects it.
    fn rtt(&mut self, t: f64, in_flight: usize) -> Option<Duration> {
        let load = in_flight as f64 / (self.knee)(t);
        if self.reject_above.is_some_and(|r| load > r) {
            return None;
        }
        let noise = 1.0 + self.noise_amp * (2.0 * self.noise.next() - 1.0);
        Some((self.service)(t).mul_f64(load.max(1.0) * noise))
    }
}

/// One point of the limit's trajectory.
#[derive(Clone, Copy, Debug)]
struct Point {
    t: f64,
    samples: u64,
    limit: usize,
}

struct Sim {
    limiter: Limiter,
    server: Server,
    /// A client that waits longer than this gives up: its permit is released as dropped.
    timeout: Option<Duration>,
    clients: usize,
    trace: Vec<Point>,
    samples: u64,
}

impl Sim {
    fn new(limit: Limit, server: Server, clients: usize) -> Sim {
        Sim {
            limiter: Limiter::new(limit).unwrap(),
            server,
            timeout: None,
            clients,
            trace: Vec::new(),
            samples: 0,
        }
    }

    /// Runs the closed loop for `secs` of virtual time.
    async fn run(&mut self, secs: f64) {
        let start = Instant::now();
        let mut heap: BinaryHeap<Reverse<(Duration, u64, usize)>> = BinaryHeap::new();
        let mut slots: Vec<Option<(Permit, bool)>> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let mut waiting = self.clients;
        let mut seq = 0u64;
        let mut next_record = 0.0;
        let end = Duration::from_secs_f64(secs);
        loop {
            let now = start.elapsed();
            let t = now.as_secs_f64();
            // Admit every waiting client the limit allows.
            while waiting > 0 {
                let Some(permit) = self.limiter.try_acquire() else {
                    break;
                };
                waiting -= 1;
                let in_flight = self.limiter.in_flight();
                let (mut rtt, mut dropped) = match self.server.rtt(t, in_flight) {
                    Some(rtt) => (rtt, false),
                    None => (Duration::from_millis(1), true),
                };
                if let Some(timeout) = self.timeout {
                    if rtt > timeout {
                        rtt = timeout;
                        dropped = true;
                    }
                }
                let slot = free.pop().unwrap_or_else(|| {
                    slots.push(None);
                    slots.len() - 1
                });
                slots[slot] = Some((permit, dropped));
                seq += 1;
                heap.push(Reverse((
                    now + rtt.max(Duration::from_micros(1)),
                    seq,
                    slot,
                )));
            }
            while t >= next_record {
                self.trace.push(Point {
                    t: next_record,
                    samples: self.samples,
                    limit: self.limiter.limit(),
                });
                next_record += 0.01;
            }
            let Some(&Reverse((at, _, _))) = heap.peek() else {
                panic!("nothing in flight")
            };
            if at > end {
                break;
            }
            if at > now {
                tokio::time::advance(at - now).await;
            }
            // Finish every job due by now.
            while let Some(&Reverse((at, _, slot))) = heap.peek() {
                if at > start.elapsed() {
                    break;
                }
                heap.pop();
                let (permit, dropped) = slots[slot].take().unwrap();
                free.push(slot);
                if dropped {
                    permit.dropped();
                } else {
                    permit.success();
                }
                self.samples += 1;
                waiting += 1;
            }
        }
        // Release what is still in flight (as ignored: the run is over, not the server).
        for (permit, _) in slots.into_iter().flatten() {
            permit.ignore();
        }
        assert_eq!(self.limiter.in_flight(), 0);
        if std::env::var_os("SIM_TRACE").is_some() {
            for p in self.trace.iter().step_by(10) {
                println!("t={:7.2}s samples={:9} limit={}", p.t, p.samples, p.limit);
            }
        }
    }

    /// Samples (finished jobs) seen by time `t`.
    fn samples_at(&self, t: f64) -> u64 {
        self.trace
            .iter()
            .take_while(|p| p.t <= t)
            .last()
            .map_or(0, |p| p.samples)
    }

    /// The virtual time at which the `n`-th job finished.
    fn time_of_sample(&self, n: u64) -> f64 {
        self.trace
            .iter()
            .find(|p| p.samples >= n)
            .unwrap_or_else(|| panic!("the run ended before {n} samples"))
            .t
    }

    /// The limit from the `n`-th sample to `to` seconds: its median, and the share of the
    /// time it spent within `band` (relative) of `target`.
    fn settled(&self, name: &str, after_samples: u64, to: f64, target: f64, band: f64) -> Settled {
        let from = self.time_of_sample(after_samples);
        let mut limits: Vec<usize> = self
            .trace
            .iter()
            .filter(|p| p.t >= from && p.t <= to)
            .map(|p| p.limit)
            .collect();
        assert!(!limits.is_empty(), "{name}: no trace in [{from}, {to}]");
        let within = limits
            .iter()
            .filter(|&&l| (l as f64 - target).abs() <= band * target)
            .count() as f64
            / limits.len() as f64;
        limits.sort_unstable();
        let settled = Settled {
            median: limits[limits.len() / 2],
            lowest: limits[0],
            within,
        };
        println!(
            "{name}: after {after_samples} samples ({from:.2} s) to {to} s: median limit {} (lowest {}, target {target}), {:.0}% of the time within {:.0}%",
            settled.median,
            settled.lowest,
            within * 100.0,
            band * 100.0
        );
        settled
    }

    /// The first time at or after `from` seconds that the limit is within `band` of `target`.
    fn first_within(&self, from: f64, target: f64, band: f64) -> Option<f64> {
        self.trace
            .iter()
            .find(|p| p.t >= from && (p.limit as f64 - target).abs() <= band * target)
            .map(|p| p.t)
    }
}

/// Where the limit sat over a span of a run.
#[derive(Debug)]
struct Settled {
    median: usize,
    lowest: usize,
    within: f64,
}

impl Settled {
    fn assert_near(&self, name: &str, target: f64, band: f64) {
        let err = (self.median as f64 - target).abs() / target;
        assert!(
            err <= band,
            "{name}: median limit {} is {:.0}% from {target} (allowed {:.0}%)",
            self.median,
            err * 100.0,
            band * 100.0
        );
    }
}

fn cpu(knee: usize) -> Server {
    Server::new(knee)
}

/// Clients in the closed loop: far more than the knee, so the limit always binds.
fn clients(knee: usize) -> usize {
    knee * 3 + 50
}

// ---- the default: Limit::adaptive() ------------------------------------------------------

/// CPU-like work (knee = cores): the default settles on the core count. Budget: 5 000
/// samples (≈ 6 s at k = 8, 3 s at k = 16, 25 s at k = 2, where jobs are 20 ms and only two
/// run at once). Measured (tolerance 1.75, as with 1.5): median exactly k for k = 2, 8, 16, within 10 %
/// for 89 %, 76 %, 84 % of the time (the rest are its probes one step either side).
#[tokio::test(start_paused = true)]
async fn adaptive_settles_on_the_core_count_for_cpu_work() {
    for (knee, budget, secs, min_within) in [
        (2usize, 1_000, 60.0, 0.4),
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
/// after 0.63 s; median 2033 and within 10 % 97 % of the time after.
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
/// goodput change. Measured (one seed, tolerance 1.75): median 2, 16 and 1001 (k = 2, 16,
/// 1000), 78–99 % of the time within 10 %; lowest 1, 8, 851.
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
/// (median within 10 %) from 2 s after the change. Measured (tolerance 1.75): 0.26 s (1000;
/// 0.14 s with 1.5) and 0.71 s (16) to first reach the band.
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
