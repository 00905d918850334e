//! The two ends of the scale: the work alone (`serial`) and the cheapest possible handoff
//! between two threads (`pingpong_atomic*`), below which no pool can go.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use super::affinity::{self, CpuMask};
use super::common::{check_sum, job, Shape};
use crate::run_stats::{Sample, Stopwatch};

/// One op: `a + b` in a loop on the calling thread. `black_box` on the inputs keeps the
/// compiler from folding the loop into a formula, and nothing more.
#[derive(Debug, Default)]
pub(crate) struct Serial;

impl Shape for Serial {
    fn run(&mut self, ops: u64) -> anyhow::Result<Sample> {
        let mut sum = 0u64;
        let clock = Stopwatch::start();
        for i in 0..ops {
            let (a, b) = job(black_box(i));
            sum = sum.wrapping_add(a + b);
        }
        let sample = clock.stop(ops);
        check_sum("serial", black_box(sum), ops)?;
        Ok(sample)
    }
}

/// Ops in one handoff of the batched ping-pong.
pub(crate) const PINGPONG_BATCH: usize = 64;
/// Spins before a waiting side starts yielding its core (a cross-core round trip on a cloud
/// VM is ~1 µs, ~50 `spin_loop`s). The threads are pinned to two cores where the OS allows,
/// so a long wait means the partner was preempted; yielding then keeps a 2-core machine's
/// other work going.
const SPINS_BEFORE_YIELD: u32 = 1 << 12;

/// What the two ping-pong threads share.
#[derive(Debug)]
struct Court {
    /// Odd: a handoff is waiting for the partner; even: the partner finished it.
    turn: Padded<AtomicU64>,
    /// Ops in the current handoff.
    len: AtomicU64,
    /// The handoff's inputs `a`; `b` is `a + 1` as in [`job`], rebuilt by the partner.
    inputs: [AtomicU64; PINGPONG_BATCH],
    /// The partner's running sum of results.
    sum: AtomicU64,
    stop: AtomicBool,
}

#[derive(Debug)]
#[repr(align(128))]
struct Padded<T>(T);

/// Two threads handing ops to each other over one atomic: the lab's main thread writes the
/// inputs and flips `turn`; the partner thread spins until it sees the flip, computes, and
/// flips it back. One op (batch 1) is one full round trip; with `PINGPONG_BATCH` ops per
/// handoff the round trip is shared by 64 ops. No allocation, no lock, no sleeping (a side
/// yields only after a long spin, when its partner was preempted); the two threads are
/// pinned to two cores where the OS allows. The floor under every shape that hands work to
/// another core and learns it is done.
#[derive(Debug)]
pub(crate) struct PingPong {
    court: &'static Court,
    batch: usize,
    partner: Option<JoinHandle<()>>,
    turn: u64,
    /// The main thread's CPU mask before it was pinned, restored on drop.
    saved_mask: Option<CpuMask>,
}

impl PingPong {
    pub(crate) fn new(batch: usize) -> anyhow::Result<PingPong> {
        anyhow::ensure!((1..=PINGPONG_BATCH).contains(&batch), "batch out of range");
        let court: &'static Court = Box::leak(Box::new(Court {
            turn: Padded(AtomicU64::new(0)),
            len: AtomicU64::new(0),
            inputs: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }));
        // Two cores for the two threads (see `affinity`); without two, the OS decides.
        let cpus = affinity::two_cpus();
        let saved_mask = cpus.and_then(|(main, _)| {
            let saved = CpuMask::current()?;
            CpuMask::only(main).apply().then_some(saved)
        });
        let partner = std::thread::Builder::new()
            .name("lab-pingpong".to_owned())
            .spawn(move || {
                if let Some((_, cpu)) = cpus {
                    CpuMask::only(cpu).apply();
                }
                partner(court)
            })?;
        let mut pingpong = PingPong {
            court,
            batch,
            partner: Some(partner),
            turn: 0,
            saved_mask,
        };
        // One round trip now, so the partner thread's start-up (and its allocations) is
        // over before any timed run.
        pingpong.run(1)?;
        Ok(pingpong)
    }

    /// Waits until `turn` reaches `want`.
    fn wait_for(&self, want: u64) {
        let mut spins = 0u32;
        while self.court.turn.0.load(Ordering::Acquire) != want {
            spin(&mut spins);
        }
    }
}

fn spin(spins: &mut u32) {
    if *spins < SPINS_BEFORE_YIELD {
        *spins += 1;
        std::hint::spin_loop();
    } else {
        // Past the spin budget, yield on every check: the partner is not running.
        std::thread::yield_now();
    }
}

fn partner(court: &Court) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0u32;
        let turn = loop {
            let t = court.turn.0.load(Ordering::Acquire);
            if t != seen {
                break t;
            }
            if court.stop.load(Ordering::Relaxed) {
                return;
            }
            spin(&mut spins);
        };
        let len = court.len.load(Ordering::Relaxed) as usize;
        let mut sum = 0u64;
        for input in &court.inputs[..len] {
            let a = input.load(Ordering::Relaxed);
            sum = sum.wrapping_add(a + (a + 1));
        }
        court.sum.fetch_add(sum, Ordering::Relaxed);
        seen = turn + 1;
        court.turn.0.store(seen, Ordering::Release);
    }
}

impl Shape for PingPong {
    fn run(&mut self, ops: u64) -> anyhow::Result<Sample> {
        let batch = self.batch as u64;
        let ops = ops.div_ceil(batch) * batch;
        let clock = Stopwatch::start();
        let mut i = 0;
        while i < ops {
            for (k, input) in self.court.inputs[..self.batch].iter().enumerate() {
                input.store(job(i + k as u64).0, Ordering::Relaxed);
            }
            self.court.len.store(batch, Ordering::Relaxed);
            self.turn += 1;
            self.court.turn.0.store(self.turn, Ordering::Release);
            self.turn += 1;
            self.wait_for(self.turn);
            i += batch;
        }
        let sample = clock.stop(ops);
        let sum = self.court.sum.swap(0, Ordering::AcqRel);
        check_sum(
            if self.batch == 1 {
                "pingpong_atomic"
            } else {
                "pingpong_atomic_batch64"
            },
            sum,
            ops,
        )?;
        Ok(sample)
    }
}

impl Drop for PingPong {
    fn drop(&mut self) {
        self.court.stop.store(true, Ordering::Relaxed);
        if let Some(p) = self.partner.take() {
            let _ = p.join();
        }
        if let Some(mask) = self.saved_mask.take() {
            mask.apply();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_sums() {
        let s = Serial.run(1000).unwrap();
        assert_eq!(s.ops, 1000);
    }

    #[test]
    fn pingpong_hands_every_op_over() {
        for batch in [1, PINGPONG_BATCH] {
            let mut p = PingPong::new(batch).unwrap();
            let s = p.run(100).unwrap();
            assert_eq!(s.ops, 100u64.div_ceil(batch as u64) * batch as u64);
            p.run(3).unwrap();
        }
        assert!(PingPong::new(0).is_err());
    }
}
