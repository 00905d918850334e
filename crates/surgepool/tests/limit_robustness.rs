//! The default limit under ordinary disturbances that used to leave it stuck or collapsed
//! (deterministic simulations on paused tokio time, in the style of `limit_simulation.rs`).
//!
//! The server is the waiting model of `limit_simulation.rs`: `K` jobs run at full speed,
//! past the knee they share capacity (`S × max(1, n / K)`, ±10 % noise), clients form a
//! closed loop of `3K + 50`. Each case disturbs it for a while and asserts that the limit
//! is back within 20 % of the knee within 2 s of the disturbance ending, and stays there.
//! `SIM_TRACE=1 cargo test --test limit_robustness -- --nocapture` prints trajectories.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use surgepool::limit::{Limit, Limiter, Permit};
use tokio::time::Instant;

const S: Duration = Duration::from_millis(20);

/// xorshift64*: deterministic noise.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
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
    /// Failed fast (a 5xx) after this time: the layer reports it as dropped.
    Failed(Duration),
    /// The client went away after this time, before the answer: the permit is dropped.
    Gone(Duration),
}

struct Sim {
    limiter: Limiter,
    knee: f64,
    /// Service time at time `t`.
    service: Box<dyn Fn(f64) -> Duration>,
    /// Share of jobs failing fast at time `t`.
    errors: Box<dyn Fn(f64) -> f64>,
    /// Share of clients that disconnect after 10 ms at time `t`.
    disconnects: Box<dyn Fn(f64) -> f64>,
    noise: Noise,
    /// Refused clients come back after this long (they honour `Retry-After`) instead of
    /// trying again at the next release.
    retry_after: Option<Duration>,
    clients: usize,
    trace: Vec<(f64, usize)>,
}

impl Sim {
    fn new(knee: usize) -> Sim {
        Sim {
            limiter: Limiter::new(Limit::adaptive()).unwrap(),
            knee: knee as f64,
            service: Box::new(|_| S),
            errors: Box::new(|_| 0.0),
            disconnects: Box::new(|_| 0.0),
            noise: Noise(0x1234_5678_9ABC_DEF1),
            retry_after: None,
            clients: knee * 3 + 50,
            trace: Vec::new(),
        }
    }

    fn fate(&mut self, t: f64, in_flight: usize) -> Fate {
        let load = (in_flight as f64 / self.knee).max(1.0);
        let noise = 1.0 + 0.1 * (2.0 * self.noise.next() - 1.0);
        let rtt = (self.service)(t).mul_f64(load * noise);
        if self.noise.next() < (self.errors)(t) {
            return Fate::Failed(Duration::from_millis(1));
        }
        let gone_after = Duration::from_millis(10);
        if rtt > gone_after && self.noise.next() < (self.disconnects)(t) {
            return Fate::Gone(gone_after);
        }
        Fate::Served(rtt)
    }

    /// Runs the closed loop for `secs` of virtual time.
    async fn run(&mut self, secs: f64) {
        let start = Instant::now();
        // (finish time, seq, slot); a slot holds the permit and whether it succeeds.
        let mut heap: BinaryHeap<Reverse<(Duration, u64, usize)>> = BinaryHeap::new();
        let mut slots: Vec<Option<(Permit, u8)>> = Vec::new();
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
            while waiting > 0 {
                let Some(permit) = self.limiter.try_acquire() else {
                    if let Some(retry) = self.retry_after {
                        // Each comes back after 1 to 1.5 × Retry-After (its own jitter).
                        for _ in 0..std::mem::take(&mut waiting) {
                            let back = retry.mul_f64(1.0 + 0.5 * self.noise.next());
                            away.push(Reverse(now + back));
                        }
                    }
                    break;
                };
                waiting -= 1;
                let (rtt, how) = match self.fate(t, self.limiter.in_flight()) {
                    Fate::Served(rtt) => (rtt, 0),
                    Fate::Failed(rtt) => (rtt, 1),
                    Fate::Gone(rtt) => (rtt, 2),
                };
                let slot = free.pop().unwrap_or_else(|| {
                    slots.push(None);
                    slots.len() - 1
                });
                slots[slot] = Some((permit, how));
                seq += 1;
                heap.push(Reverse((
                    now + rtt.max(Duration::from_micros(1)),
                    seq,
                    slot,
                )));
            }
            while t >= next_record {
                self.trace.push((next_record, self.limiter.limit()));
                next_record += 0.01;
            }
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
            while let Some(&Reverse((at, _, slot))) = heap.peek() {
                if at > start.elapsed() {
                    break;
                }
                heap.pop();
                let (permit, how) = slots[slot].take().unwrap();
                free.push(slot);
                match how {
                    0 => permit.success(),
                    1 => permit.dropped(),
                    _ => drop(permit), // what a cancelled request future does
                }
                waiting += 1;
            }
        }
        for (permit, _) in slots.into_iter().flatten() {
            permit.ignore();
        }
        assert_eq!(self.limiter.in_flight(), 0);
        if std::env::var_os("SIM_TRACE").is_some() {
            for (t, limit) in self.trace.iter().step_by(10) {
                println!("t={t:6.2}s limit={limit}");
            }
        }
    }

    /// Asserts that the limit never fell below half the knee from `from` on.
    fn assert_no_collapse(&self, name: &str, from: f64) {
        let lowest = self
            .trace
            .iter()
            .filter(|(t, _)| *t >= from)
            .map(|&(_, l)| l)
            .min();
        let lowest = lowest.unwrap();
        assert!(
            lowest as f64 >= 0.5 * self.knee,
            "{name}: collapsed to {lowest} (knee {})",
            self.knee
        );
    }

    /// Asserts that the limit is back within 20 % of the knee within 2 s of `ended` and
    /// that its median from then to the end of the run is within 20 % too.
    fn assert_recovered(&self, name: &str, ended: f64) {
        let target = self.knee;
        let near = |l: usize| (l as f64 - target).abs() <= 0.2 * target;
        let lowest = self
            .trace
            .iter()
            .filter(|(t, _)| *t >= ended - 1.0 && *t <= ended)
            .map(|&(_, l)| l)
            .min()
            .unwrap();
        let back = self
            .trace
            .iter()
            .find(|&&(t, l)| t >= ended && near(l))
            .map(|&(t, _)| t - ended);
        let mut after: Vec<usize> = self
            .trace
            .iter()
            .filter(|(t, _)| *t >= ended + 2.0)
            .map(|&(_, l)| l)
            .collect();
        after.sort_unstable();
        let median = after[after.len() / 2];
        println!(
            "{name}: lowest {lowest} during the last second of the disturbance, back within 20% of {target} after {back:?} s, median {median} from 2 s after"
        );
        let back = back.unwrap_or_else(|| panic!("{name}: never back near the knee"));
        assert!(back <= 2.0, "{name}: back only after {back:.2} s");
        assert!(near(median), "{name}: median {median} after, knee {target}");
    }
}

/// Warm up on cheap work (2 ms), then the work gets ten times dearer, gradually over half
/// a second (as when traffic moves from one route to another): the latency climbs for many
/// windows, so the guard cuts all the way to the minimum, where a cut changes nothing.
/// Before the fix it stayed at the minimum for good: the "the work got slower" test needs a
/// cut that lowered the limit, and the guard returned before the periodic re-measure.
#[tokio::test(start_paused = true)]
async fn a_cheap_warm_up_then_expensive_work_does_not_stick_at_the_minimum() {
    for knee in [16, 1000] {
        let mut sim = Sim::new(knee);
        sim.service = Box::new(|t| {
            let cheap = Duration::from_millis(2);
            if t < 3.0 {
                cheap
            } else if t < 3.5 {
                cheap.mul_f64(1.0 + 9.0 * (t - 3.0) / 0.5)
            } else {
                S
            }
        });
        sim.run(9.0).await;
        sim.assert_recovered(&format!("cheap then dear, k={knee}"), 3.5);
    }
}

/// A 1 s burst in which 20 % of the requests fail fast (a 5xx in 1 ms). Fast failures with
/// flat latency are not overload: before the fix each window with more than 10 % drops cut
/// the limit by 10 %, down from the knee to a few dozen.
#[tokio::test(start_paused = true)]
async fn a_burst_of_fast_errors_does_not_collapse_the_limit() {
    let knee = 1000;
    let mut sim = Sim::new(knee);
    sim.errors = Box::new(|t| if (3.0..4.0).contains(&t) { 0.2 } else { 0.0 });
    sim.run(8.0).await;
    sim.assert_recovered("20% fast 5xx for 1 s", 4.0);
    sim.assert_no_collapse("20% fast 5xx for 1 s", 2.5);
}

/// One client in 8 disconnects after 10 ms (before its 20 ms answer) for 1 s: the layer
/// drops those permits, which count as dropped. A client going away early is not overload.
#[tokio::test(start_paused = true)]
async fn client_disconnects_do_not_collapse_the_limit() {
    let knee = 1000;
    let mut sim = Sim::new(knee);
    sim.disconnects = Box::new(|t| if (3.0..4.0).contains(&t) { 0.125 } else { 0.0 });
    sim.run(8.0).await;
    sim.assert_recovered("1 in 8 disconnect at 10 ms for 1 s", 4.0);
    sim.assert_no_collapse("1 in 8 disconnect at 10 ms for 1 s", 2.5);
}

/// 256 clients on a 20 ms route that honour `Retry-After: 1`: refused, they come back a
/// second later, so the work present at any moment is little more than what the limit let
/// in, and goodput cannot follow a step up. Starting from the default initial limit, the
/// limit must still find the knee (here 200: the machine's capacity, not the clients'),
/// within 2 s of the first wave of refused clients coming back (t = 1–1.5 s, each client
/// adds its own jitter of up to half the Retry-After). Before the fix it sat at 1–3 for
/// the whole run: an up-move was judged on a window in which nobody came for the new slots,
/// and rejected. Not covered: clients that all come back in the same instant (no jitter),
/// where the limit grows one step per wave.
#[tokio::test(start_paused = true)]
async fn clients_that_honour_retry_after_do_not_hold_the_limit_at_its_floor() {
    let knee = 200;
    let mut sim = Sim::new(knee);
    sim.clients = 1000;
    sim.retry_after = Some(Duration::from_secs(1));
    sim.run(12.0).await;
    sim.assert_recovered("Retry-After clients", 2.0);
}
