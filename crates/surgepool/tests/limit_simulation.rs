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
}

impl Server {
    fn new(knee: usize) -> Server {
        Server {
            knee: Box::new(move |_| knee as f64),
            service: Box::new(|_| S),
            noise: Noise(0x1234_5678_9ABC_DEF1),
        }
    }

    fn rtt(&mut self, t: f64, in_flight: usize) -> Duration {
        let stretch = (in_flight as f64 / (self.knee)(t)).max(1.0);
        let noise = 0.9 + 0.2 * self.noise.next();
        (self.service)(t).mul_f64(stretch * noise)
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
                let mut rtt = self.server.rtt(t, in_flight);
                let mut dropped = false;
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

    /// The limit over `[from, to]` seconds: (median, share of time within `band` of `target`).
    fn settled(&self, from: f64, to: f64, target: f64, band: f64) -> (usize, f64) {
        let mut limits: Vec<usize> = self
            .trace
            .iter()
            .filter(|p| p.t >= from && p.t <= to)
            .map(|p| p.limit)
            .collect();
        assert!(!limits.is_empty(), "no trace in [{from}, {to}]");
        let within = limits
            .iter()
            .filter(|&&l| (l as f64 - target).abs() <= band * target)
            .count() as f64
            / limits.len() as f64;
        limits.sort_unstable();
        (limits[limits.len() / 2], within)
    }

    /// Samples (finished jobs) seen by time `t`.
    fn samples_at(&self, t: f64) -> u64 {
        self.trace
            .iter()
            .take_while(|p| p.t <= t)
            .last()
            .map_or(0, |p| p.samples)
    }

    fn report(&self, name: &str, from: f64, to: f64, target: f64, band: f64) -> (usize, f64) {
        let (median, within) = self.settled(from, to, target, band);
        println!(
            "{name}: median limit {median} over [{from}s, {to}s] (knee {target}), {:.0}% of the time within {:.0}%, {} samples by {from}s",
            within * 100.0,
            band * 100.0,
            self.samples_at(from)
        );
        (median, within)
    }
}

fn assert_near(name: &str, median: usize, target: f64, band: f64) {
    let err = (median as f64 - target).abs() / target;
    assert!(
        err <= band,
        "{name}: median {median} is {:.0}% from the knee {target} (allowed {:.0}%)",
        err * 100.0,
        band * 100.0
    );
}

// ---- the default -------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn adaptive_settles_at_the_knee_of_cpu_work() {
    for knee in [2usize, 8, 16] {
        let mut sim = Sim::new(Limit::adaptive(), Server::new(knee), knee * 10 + 20);
        sim.run(30.0).await;
        let (median, within) = sim.report(
            &format!("adaptive cpu k={knee}"),
            5.0,
            30.0,
            knee as f64,
            0.10,
        );
        assert_near("adaptive cpu", median, knee as f64, 0.10);
        let _ = within;
    }
}

#[tokio::test(start_paused = true)]
async fn adaptive_settles_at_the_knee_of_waiting_work() {
    let knee = 2000usize;
    let mut sim = Sim::new(Limit::adaptive(), Server::new(knee), knee * 3);
    sim.run(15.0).await;
    let (median, _) = sim.report("adaptive waiting k=2000", 3.0, 15.0, knee as f64, 0.10);
    assert_near("adaptive waiting", median, knee as f64, 0.10);
}
