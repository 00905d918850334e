//! Open-loop arrivals for the simulated server: Poisson arrivals at a fixed rate, each
//! tried once (`try_acquire`); a refusal is a shed request, not a client that waits. This
//! is how a service below its capacity sees the world: the limit must let the bursts of
//! random arrivals through.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use surgepool::limit::Permit;
use tokio::time::Instant;

use super::{start_job, Fate, Sim};

/// What an open-loop run saw.
#[derive(Debug, Default)]
pub struct OpenRun {
    /// Arrival times (seconds) of the requests the limit refused.
    pub refused_at: Vec<f64>,
    /// Arrivals in all.
    pub arrivals: u64,
    /// Arrival times of all requests, one per 1,000 (to count arrivals in a span).
    pub arrival_marks: Vec<f64>,
}

impl OpenRun {
    /// Refused requests that arrived at or after `from` seconds.
    pub fn refused_from(&self, from: f64) -> usize {
        self.refused_at.iter().filter(|&&t| t >= from).count()
    }

    /// Arrivals at or after `from` seconds (to within 1,000).
    pub fn arrivals_from(&self, from: f64) -> u64 {
        self.arrival_marks.iter().filter(|&&t| t >= from).count() as u64 * 1_000
    }
}

impl Sim {
    /// Runs `secs` of virtual time with Poisson arrivals at `rate` per second (`clients`
    /// is not used: the load does not wait for answers).
    pub async fn run_open(&mut self, rate: f64, secs: f64) -> OpenRun {
        let start = Instant::now();
        let mut run = OpenRun::default();
        let mut heap: BinaryHeap<Reverse<(Duration, u64, usize)>> = BinaryHeap::new();
        let mut slots: Vec<Option<Permit>> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let (mut seq, mut next_record) = (0u64, 0.0);
        let end = Duration::from_secs_f64(secs);
        let mut next_arrival = Duration::ZERO;
        loop {
            let now = start.elapsed();
            let t = now.as_secs_f64();
            while next_arrival <= now {
                let at = next_arrival.as_secs_f64();
                run.arrivals += 1;
                if run.arrivals % 1_000 == 0 {
                    run.arrival_marks.push(at);
                }
                // Exponential inter-arrival times (1 - u is in (0, 1]).
                let gap = -(1.0 - self.server.noise.next()).ln() / rate;
                next_arrival += Duration::from_secs_f64(gap);
                let Some(permit) = self.limiter.try_acquire() else {
                    run.refused_at.push(at);
                    continue;
                };
                let rtt = match self.server.fate(t, self.limiter.in_flight()) {
                    Fate::Served(rtt) | Fate::Failed(rtt) | Fate::Gone(rtt) => rtt,
                };
                start_job(&mut heap, &mut slots, &mut free, &mut seq, now, rtt, permit);
            }
            self.record(t, &mut next_record);
            let at = heap
                .peek()
                .map_or(next_arrival, |&Reverse((at, _, _))| at.min(next_arrival));
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
                slots[slot].take().unwrap().success();
                free.push(slot);
                self.samples += 1;
            }
        }
        for permit in slots.into_iter().flatten() {
            permit.ignore();
        }
        self.print_trace();
        run
    }
}
