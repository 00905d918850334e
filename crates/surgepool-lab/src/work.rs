//! The unit of work the overload experiments run per request.
//!
//! Seed 003's job is "20 ms of processing and a 500 KB allocation". We keep the allocation in
//! every kind of work (it is what makes unbounded concurrency cost memory) and vary what the
//! 20 ms is:
//!
//! * [`WorkKind::Sleep`]: allocate, touch, then wait `service` on a tokio timer (I/O-like work:
//!   the right concurrency is thousands);
//! * [`WorkKind::Cpu`]: allocate, touch, then spin for `service` of *thread CPU time* (CPU-bound
//!   work: the right concurrency is about the core count). The spin blocks its tokio worker
//!   thread on purpose; that is what CPU work in an async handler does;
//! * [`WorkKind::Mixed`]: half the service time spinning, half sleeping.
//!
//! The spin is measured on the thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`), not the wall
//! clock: when the machine is oversubscribed a wall-clock spin would do less work per request
//! exactly when the load is highest, flattering every strategy that oversubscribes.

use std::hint::black_box;
use std::time::Duration;

/// Bytes between two writes into the allocation: one write per 4 KiB page makes every page
/// resident, so the allocation shows up in RSS as it would for a decoded request body.
const PAGE: usize = 4096;

/// What a request does for its service time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum WorkKind {
    /// Allocate, then sleep (waiting work).
    Sleep,
    /// Allocate, then spin on the CPU (CPU-bound work).
    Cpu,
    /// Allocate, then half spin and half sleep.
    Mixed,
}

impl WorkKind {
    /// The name used on the command line and in JSON.
    pub(crate) fn name(self) -> &'static str {
        match self {
            WorkKind::Sleep => "sleep",
            WorkKind::Cpu => "cpu",
            WorkKind::Mixed => "mixed",
        }
    }
}

/// One request's work: a kind, a service time and an allocation size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Work {
    pub(crate) kind: WorkKind,
    pub(crate) service: Duration,
    pub(crate) alloc_bytes: usize,
}

impl Work {
    /// Runs the work once. Must be polled inside a tokio runtime with timers enabled.
    pub(crate) async fn run(self) {
        let buffer = allocate_and_touch(self.alloc_bytes);
        match self.kind {
            WorkKind::Sleep => tokio::time::sleep(self.service).await,
            WorkKind::Cpu => spin_cpu(self.service),
            WorkKind::Mixed => {
                let half = self.service / 2;
                spin_cpu(half);
                tokio::time::sleep(self.service - half).await;
            }
        }
        // Held for the whole service time, like a request body a handler works on.
        drop(black_box(buffer));
    }
}

/// Allocates `bytes` and writes one byte per page so all of it is resident.
fn allocate_and_touch(bytes: usize) -> Vec<u8> {
    // Zeroed memory may be mapped lazily (calloc/mmap): the writes below make it resident.
    let mut buffer = vec![0u8; bytes];
    let mut i = 0;
    while i < bytes {
        // `black_box` keeps the compiler from proving the writes dead.
        buffer[i] = black_box(1);
        i += PAGE;
    }
    buffer
}

/// Spins until this thread has used `cpu` of CPU time.
pub(crate) fn spin_cpu(cpu: Duration) {
    let Some(start) = thread_cpu_time() else {
        // No thread clock (not expected on Linux): fall back to the wall clock.
        let start = std::time::Instant::now();
        while start.elapsed() < cpu {
            std::hint::spin_loop();
        }
        return;
    };
    let mut spins = 0u64;
    loop {
        // Read the clock every few hundred iterations: it is a vDSO call, but still ~20 ns.
        for _ in 0..256 {
            spins = black_box(spins.wrapping_add(1));
        }
        match thread_cpu_time() {
            Some(now) if now.saturating_sub(start) < cpu => continue,
            _ => break,
        }
    }
}

/// CPU time used by the calling thread.
pub(crate) fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is a constant the kernel
    // knows; the call writes only into `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(ts.tv_sec).ok()?,
        u32::try_from(ts.tv_nsec).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_is_touched_and_sized() {
        let b = allocate_and_touch(10 * PAGE + 7);
        assert_eq!(b.len(), 10 * PAGE + 7);
        assert_eq!(b.iter().filter(|&&x| x == 1).count(), 11);
    }

    #[test]
    fn thread_clock_moves_forward_while_spinning() {
        let before = thread_cpu_time().expect("Linux has a thread CPU clock");
        spin_cpu(Duration::from_millis(2));
        let after = thread_cpu_time().unwrap();
        assert!(after - before >= Duration::from_millis(2));
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_work_waits_its_service_time() {
        let start = tokio::time::Instant::now();
        Work {
            kind: WorkKind::Sleep,
            service: Duration::from_millis(20),
            alloc_bytes: 3 * PAGE,
        }
        .run()
        .await;
        assert_eq!(start.elapsed(), Duration::from_millis(20));
    }
}
