//! The simulation harness of `limit_simulation.rs` and `limit_robustness.rs`: a
//! discrete-event loop on paused tokio time drives `Limiter::try_acquire` for a closed loop
//! of clients and releases each permit when its simulated service time has passed on
//! tokio's clock.
//!
//! The server: `K` jobs run at full speed; past the knee they share the capacity, so a job
//! admitted with `n` in flight takes `S × max(1, n / K)` (processor sharing, as CPU work on
//! `K` cores), with ±10 % noise. Knee and service time may change with time; the server may
//! also reject above a load (a fast 503), fail a share of jobs fast (a 5xx) or lose a share
//! of its clients before they get the answer, and the jobs admitted in one stretch of time
//! may share a slowness drawn afresh for each stretch (`Drift`: a machine whose other load
//! comes and goes). Clients may give up after a timeout, or, refused, come back after a
//! `Retry-After` instead of at the next release.
//!
//! Every draw of the noise happens in the same order as before the two harnesses were one,
//! so the simulations' figures (quoted in `limit/README.md` and the tests' docs) stand.
//! `SIM_TRACE=1 cargo test --test limit_simulation -- --nocapture` prints trajectories;
//! `SIM_SEED=<n>` draws other noise.
#![allow(dead_code, unreachable_pub)]

mod open;
#[allow(unused_imports)]
pub use open::OpenRun;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use surgepool::limit::{Limit, Limiter, Permit};
use tokio::time::Instant;

/// The unloaded service time.
pub const S: Duration = Duration::from_millis(20);

/// xorshift64*: deterministic noise for the simulated server.
pub struct Noise(u64);

/// Spreads a small seed over all 64 bits (Steele, Lea and Flood's SplitMix64 finaliser).
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Noise {
    /// The fixed seed the quoted figures come from, or `SIM_SEED` (a number) to see whether
    /// a change's effect holds beyond one draw of the noise (the asserted bounds are for the
    /// fixed seed).
    ///
    /// `SIM_SEED` goes through splitmix64 first: taken as it was with its lowest bit set
    /// (xorshift stays at 0 from 0), seeds 2 and 3, 4 and 5, ... drew the same noise, so
    /// `SIM_SEED=1..12` (quoted in `limit/README.md` until 2026-12-05) was 7 draws, not 12.
    fn from_env() -> Noise {
        let seed = std::env::var("SIM_SEED")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .map_or(0x1234_5678_9ABC_DEF1, splitmix64);
        Noise(seed | 1) // xorshift stays at 0 from 0
    }

    pub fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What happens to one admitted job.
enum Fate {
    /// Served in this time.
    Served(Duration),
    /// Rejected or failed fast after this time: released as dropped.
    Failed(Duration),
    /// The client went away after this time, before the answer: the permit is dropped,
    /// as a cancelled request future drops it.
    Gone(Duration),
}

/// A time-dependent share or rate.
pub type Share = Box<dyn Fn(f64) -> f64>;

/// The hidden server: its knee and service time, both allowed to change with time.
pub struct Server {
    pub knee: Share,
    pub service: Box<dyn Fn(f64) -> Duration>,
    pub noise: Noise,
    /// Relative amplitude of the service-time noise (0.1: ±10 %).
    pub noise_amp: f64,
    /// If set, a job admitted with more than this × knee in flight is rejected at once
    /// (a fast 503): the loss signal AIMD is built for.
    pub reject_above: Option<f64>,
    /// If set, the share of jobs failing fast (a 5xx in 1 ms) at time `t`; one draw per job.
    pub errors: Option<Share>,
    /// If set, the share of clients that disconnect after 10 ms at time `t` (one draw per
    /// job that takes longer than that).
    pub disconnects: Option<Share>,
    /// If set, a *soft* knee: past it a job takes `S × load^soft` instead of `S × load`
    /// (with `soft` < 1, goodput keeps growing past the knee, by `1 − soft` of each added
    /// slot's proportional share, while the latency rises: memory bandwidth, not cores,
    /// running out; or work that half waits).
    pub soft: Option<f64>,
    /// If set, a slowness shared by every job admitted in the same stretch of time: a
    /// machine whose other load comes and goes (see [`Drift`]).
    pub drift: Option<Drift>,
}

/// A factor on the service time that holds for `period` seconds and is then drawn afresh,
/// uniformly within ±`amp`: noise that every job of a window shares, which more samples in
/// one window do not average away (the lab's HTTP server beside its load generator: the
/// mean RTT of windows at one limit varied by 10–20 % while each window's own standard
/// error said 1 %). Its draws come from a noise stream of its own, so the per-job draws of
/// the other models are unchanged.
pub struct Drift {
    pub period: f64,
    pub amp: f64,
    noise: Noise,
    at: Option<(u64, f64)>,
}

impl Drift {
    pub fn new(period: f64, amp: f64) -> Drift {
        let mut noise = Noise::from_env();
        noise.0 = splitmix64(noise.0) | 1;
        Drift {
            period,
            amp,
            noise,
            at: None,
        }
    }

    fn factor(&mut self, t: f64) -> f64 {
        let index = (t / self.period) as u64;
        match self.at {
            Some((at, factor)) if at == index => factor,
            _ => {
                let factor = 1.0 + self.amp * (2.0 * self.noise.next() - 1.0);
                self.at = Some((index, factor));
                factor
            }
        }
    }
}

impl Server {
    pub fn new(knee: usize) -> Server {
        Server {
            knee: Box::new(move |_| knee as f64),
            service: Box::new(|_| S),
            noise: Noise::from_env(),
            noise_amp: 0.1,
            reject_above: None,
            errors: None,
            disconnects: None,
            soft: None,
            drift: None,
        }
    }

    fn fate(&mut self, t: f64, in_flight: usize) -> Fate {
        let load = in_flight as f64 / (self.knee)(t);
        if self.reject_above.is_some_and(|r| load > r) {
            return Fate::Failed(Duration::from_millis(1));
        }
        let noise = 1.0 + self.noise_amp * (2.0 * self.noise.next() - 1.0);
        let slowdown = match self.soft {
            Some(soft) => load.max(1.0).powf(soft),
            None => load.max(1.0),
        };
        let drift = self.drift.as_mut().map_or(1.0, |d| d.factor(t));
        let rtt = (self.service)(t).mul_f64(slowdown * noise * drift);
        if let Some(errors) = &self.errors {
            if self.noise.next() < errors(t) {
                return Fate::Failed(Duration::from_millis(1));
            }
        }
        let gone_after = Duration::from_millis(10);
        if let Some(disconnects) = &self.disconnects {
            if rtt > gone_after && self.noise.next() < disconnects(t) {
                return Fate::Gone(gone_after);
            }
        }
        Fate::Served(rtt)
    }
}

/// Puts `job` in a free slot and schedules its end `rtt` after `now` (at least 1 µs).
fn start_job<T>(
    heap: &mut BinaryHeap<Reverse<(Duration, u64, usize)>>,
    slots: &mut Vec<Option<T>>,
    free: &mut Vec<usize>,
    seq: &mut u64,
    now: Duration,
    rtt: Duration,
    job: T,
) {
    let slot = free.pop().unwrap_or_else(|| {
        slots.push(None);
        slots.len() - 1
    });
    slots[slot] = Some(job);
    *seq += 1;
    heap.push(Reverse((
        now + rtt.max(Duration::from_micros(1)),
        *seq,
        slot,
    )));
}

/// One point of the limit's trajectory.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    pub t: f64,
    pub samples: u64,
    /// Jobs served within `Sim::slo` so far.
    pub in_time: u64,
    pub limit: usize,
}

pub struct Sim {
    pub limiter: Limiter,
    pub server: Server,
    /// A client that waits longer than this gives up: its permit is released as dropped.
    pub timeout: Option<Duration>,
    /// Refused clients come back after this long (they honour `Retry-After`) instead of
    /// trying again at the next release.
    pub retry_after: Option<Duration>,
    pub clients: usize,
    pub trace: Vec<Point>,
    pub samples: u64,
    /// The latency objective the run's SLO goodput counts against (default 3 × `S`).
    pub slo: Duration,
    /// Jobs served within `slo`.
    pub in_time: u64,
}

/// How a finished job releases its permit.
#[derive(Clone, Copy)]
enum Release {
    Success,
    Dropped,
    Gone,
}

impl Sim {
    pub fn new(limit: Limit, server: Server, clients: usize) -> Sim {
        Sim {
            limiter: Limiter::new(limit).unwrap(),
            server,
            timeout: None,
            retry_after: None,
            clients,
            trace: Vec::new(),
            samples: 0,
            slo: S * 3,
            in_time: 0,
        }
    }

    /// Runs the closed loop for `secs` of virtual time.
    pub async fn run(&mut self, secs: f64) {
        let start = Instant::now();
        // (finish time, seq, slot); a slot holds the permit and how it is released.
        let mut heap: BinaryHeap<Reverse<(Duration, u64, usize)>> = BinaryHeap::new();
        // A slot holds the permit, how it is released and whether it is served in time.
        let mut slots: Vec<Option<(Permit, Release, bool)>> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let (mut waiting, mut seq, mut next_record) = (self.clients, 0u64, 0.0);
        // Clients away until a given time (honouring Retry-After), soonest first.
        let mut away: BinaryHeap<Reverse<Duration>> = BinaryHeap::new();
        let end = Duration::from_secs_f64(secs);
        loop {
            let now = start.elapsed();
            let t = now.as_secs_f64();
            while away.peek().is_some_and(|&Reverse(at)| at <= now) {
                away.pop();
                waiting += 1;
            }
            // Admit every waiting client the limit allows.
            while waiting > 0 {
                let Some(permit) = self.limiter.try_acquire() else {
                    if let Some(retry) = self.retry_after {
                        // Each comes back after 1 to 1.5 × Retry-After (its own jitter).
                        for _ in 0..std::mem::take(&mut waiting) {
                            let back = retry.mul_f64(1.0 + 0.5 * self.server.noise.next());
                            away.push(Reverse(now + back));
                        }
                    }
                    break;
                };
                waiting -= 1;
                let (rtt, release) = match self.server.fate(t, self.limiter.in_flight()) {
                    Fate::Served(rtt) => match self.timeout {
                        Some(timeout) if rtt > timeout => (timeout, Release::Dropped),
                        _ => (rtt, Release::Success),
                    },
                    Fate::Failed(rtt) => (rtt, Release::Dropped),
                    Fate::Gone(rtt) => (rtt, Release::Gone),
                };
                let in_time = matches!(release, Release::Success) && rtt <= self.slo;
                let job = (permit, release, in_time);
                start_job(&mut heap, &mut slots, &mut free, &mut seq, now, rtt, job);
            }
            self.record(t, &mut next_record);
            let Some(&Reverse((at, _, _))) = heap.peek() else {
                panic!("nothing in flight")
            };
            let at = away.peek().map_or(at, |&Reverse(back)| at.min(back));
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
                let (permit, release, in_time) = slots[slot].take().unwrap();
                free.push(slot);
                self.in_time += u64::from(in_time);
                match release {
                    Release::Success => permit.success(),
                    Release::Dropped => permit.dropped(),
                    Release::Gone => drop(permit),
                }
                self.samples += 1;
                waiting += 1;
            }
        }
        // Release what is still in flight (as ignored: the run is over, not the server).
        for (permit, _, _) in slots.into_iter().flatten() {
            permit.ignore();
        }
        assert_eq!(self.limiter.in_flight(), 0);
        self.print_trace();
    }

    /// Appends the limit to the trace every 10 ms of virtual time up to `t`.
    fn record(&mut self, t: f64, next_record: &mut f64) {
        while t >= *next_record {
            self.trace.push(Point {
                t: *next_record,
                samples: self.samples,
                in_time: self.in_time,
                limit: self.limiter.limit(),
            });
            *next_record += 0.01;
        }
    }

    /// With `SIM_TRACE` set, prints the trajectory (every 100 ms).
    fn print_trace(&self) {
        if std::env::var_os("SIM_TRACE").is_some() {
            for p in self.trace.iter().step_by(10) {
                println!("t={:7.2}s samples={:9} limit={}", p.t, p.samples, p.limit);
            }
        }
    }

    /// Samples (finished jobs) seen by time `t`.
    pub fn samples_at(&self, t: f64) -> u64 {
        self.trace
            .iter()
            .take_while(|p| p.t <= t)
            .last()
            .map_or(0, |p| p.samples)
    }

    /// Jobs served within `slo` per second of virtual time from `from` to `to` seconds.
    pub fn slo_goodput(&self, from: f64, to: f64) -> f64 {
        let at = |t: f64| {
            self.trace
                .iter()
                .take_while(|p| p.t <= t)
                .last()
                .map_or(0, |p| p.in_time)
        };
        (at(to) - at(from)) as f64 / (to - from)
    }

    /// The virtual time at which the `n`-th job finished.
    pub fn time_of_sample(&self, n: u64) -> f64 {
        self.trace
            .iter()
            .find(|p| p.samples >= n)
            .unwrap_or_else(|| panic!("the run ended before {n} samples"))
            .t
    }

    /// The limit from the `n`-th sample to `to` seconds: its median, and the share of the
    /// time it spent within `band` (relative) of `target`.
    pub fn settled(
        &self,
        name: &str,
        after_samples: u64,
        to: f64,
        target: f64,
        band: f64,
    ) -> Settled {
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
    pub fn first_within(&self, from: f64, target: f64, band: f64) -> Option<f64> {
        self.trace
            .iter()
            .find(|p| p.t >= from && (p.limit as f64 - target).abs() <= band * target)
            .map(|p| p.t)
    }
}

/// Where the limit sat over a span of a run.
#[derive(Debug)]
pub struct Settled {
    pub median: usize,
    pub lowest: usize,
    pub within: f64,
}

impl Settled {
    pub fn assert_near(&self, name: &str, target: f64, band: f64) {
        let err = (self.median as f64 - target).abs() / target;
        assert!(
            err <= band,
            "{name}: median limit {} is {:.0}% from {target} (allowed {:.0}%)",
            self.median,
            err * 100.0,
            band * 100.0
        );
    }

    /// Like [`Settled::assert_near`], with a band that differs below and above `target`.
    pub fn assert_between(&self, name: &str, target: f64, below: f64, above: f64) {
        let median = self.median as f64;
        assert!(
            median >= target * (1.0 - below) && median <= target * (1.0 + above),
            "{name}: median limit {} against {target} (allowed -{:.0}% to +{:.0}%)",
            self.median,
            below * 100.0,
            above * 100.0
        );
    }
}

/// Clients in the closed loop: far more than the knee, so the limit always binds.
pub fn clients(knee: usize) -> usize {
    knee * 3 + 50
}
