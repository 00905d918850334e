//! `--scenario`: how the load changes halfway through the arrivals.
//!
//! A stationary workload is where a hand-tuned fixed limit is hardest to beat; adaptivity
//! exists for load that changes. Two changes, each at the midpoint of a strategy's arrivals:
//!
//! * `slowdown`: every request that *starts* its work from then on takes
//!   [`SLOWDOWN_FACTOR`]× the service time, as when a downstream got slower. For waiting work
//!   the right limit grows by the same factor (Little's law: in flight = rate × time). The
//!   SLO is a multiple of the service time, so slowed work is judged against the SLO times
//!   the same factor: a fixed SLO would be missed by every strategy, by design, and the
//!   second half would measure nothing.
//! * `capacity-drop`: a CPU hog takes one core, as a noisy neighbour would. The hog is a thread
//!   pinned to one core that spins until the run ends, and every other thread of the process
//!   is confined to the remaining cores. Why confine them too: a neighbour pinned to a core at
//!   the same priority only gets its CFS fair share (with 2 workers and 1 hog on 2 cores, the
//!   workers keep 4/3 of a core); confining the process models a neighbour that *owns* that
//!   core (a cpuset taken away), so the machine's capacity for this process halves on a
//!   2-core machine and the right limit for CPU-bound work halves with it. With one core
//!   allowed, nothing can be taken away: the hog then shares that core.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// `slowdown` multiplies the service time by this.
pub(crate) const SLOWDOWN_FACTOR: u32 = 3;

/// How the load changes at the midpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Change {
    /// Nothing changes.
    Steady,
    /// The service time triples halfway.
    Slowdown,
    /// A CPU hog takes one core halfway.
    CapacityDrop,
}

impl Change {
    /// The name on the command line and in the JSON.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Change::Steady => "steady",
            Change::Slowdown => "slowdown",
            Change::CapacityDrop => "capacity-drop",
        }
    }

    /// The change in words, for the table and the report.
    pub(crate) fn describe(self) -> String {
        match self {
            Change::Steady => "steady load".to_owned(),
            Change::Slowdown => {
                format!(
                    "halfway, the service time becomes {SLOWDOWN_FACTOR}x (a slower downstream)"
                )
            }
            Change::CapacityDrop => {
                "halfway, a CPU hog takes one core (a noisy neighbour)".to_owned()
            }
        }
    }
}

/// The service time of work that starts at `now` when the slowdown begins at `slow_from`.
pub(crate) fn service_at(base: Duration, slow_from: Option<Instant>, now: Instant) -> Duration {
    match slow_from {
        Some(at) if now >= at => base.saturating_mul(SLOWDOWN_FACTOR),
        _ => base,
    }
}

/// A running (or waiting) CPU hog; dropping it stops the hog.
#[derive(Debug)]
pub(crate) struct Hog {
    stop: Arc<AtomicBool>,
    /// What the hog did, in words, once it started.
    took: Arc<Mutex<Option<String>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Hog {
    /// Starts a thread that waits until `at`, then takes one core (see the module docs) and
    /// spins on it until dropped.
    pub(crate) fn start_at(at: Instant) -> std::io::Result<Hog> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let took = Arc::new(Mutex::new(None));
        let said = Arc::clone(&took);
        let thread = thread::Builder::new()
            .name("cpu-hog".into())
            .spawn(move || {
                while Instant::now() < at {
                    if flag.load(Ordering::Relaxed) {
                        return;
                    }
                    thread::sleep(
                        at.saturating_duration_since(Instant::now())
                            .min(Duration::from_millis(5)),
                    );
                }
                let what = match take_one_core() {
                    Ok(what) => what,
                    Err(err) => format!("a hog spun unpinned (pinning failed: {err})"),
                };
                *said.lock().unwrap_or_else(|e| e.into_inner()) = Some(what);
                let mut spins = 0u64;
                while !flag.load(Ordering::Relaxed) {
                    for _ in 0..1024 {
                        spins = std::hint::black_box(spins.wrapping_add(1));
                    }
                }
            })?;
        Ok(Hog {
            stop,
            took,
            thread: Some(thread),
        })
    }

    /// What the hog did, once it started (`None` before its time).
    pub(crate) fn took(&self) -> Option<String> {
        self.took.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Pins the calling thread to the last core this process may use and moves every other
/// thread of the process to the remaining cores; says what it did.
fn take_one_core() -> std::io::Result<String> {
    let allowed = affinity(0)?;
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| {
            // SAFETY: `c` is below CPU_SETSIZE and `allowed` is an initialised cpu_set_t.
            unsafe { libc::CPU_ISSET(c, &allowed) }
        })
        .collect();
    let Some(&hog_cpu) = cpus.last() else {
        return Ok("a hog spun unpinned (no CPU in the affinity mask)".to_owned());
    };
    set_affinity(0, &[hog_cpu])?;
    if cpus.len() < 2 {
        return Ok(format!(
            "a hog took a share of CPU {hog_cpu}, the only one allowed"
        ));
    }
    let rest = &cpus[..cpus.len() - 1];
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::gettid() };
    for entry in std::fs::read_dir("/proc/self/task")? {
        let Ok(tid) = entry?.file_name().to_string_lossy().parse::<libc::pid_t>() else {
            continue;
        };
        if tid != me {
            // A thread that exited meanwhile is no error: there is nothing left to move.
            let _ = set_affinity(tid, rest);
        }
    }
    Ok(format!(
        "a hog took CPU {hog_cpu}; the rest of the process ran on CPUs {rest:?}"
    ))
}

fn affinity(tid: libc::pid_t) -> std::io::Result<libc::cpu_set_t> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set; the kernel writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid and writable for `size_of::<cpu_set_t>()` bytes.
    let rc = unsafe { libc::sched_getaffinity(tid, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(set)
}

fn set_affinity(tid: libc::pid_t, cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: as in `affinity`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: `c` came from CPU_ISSET over 0..CPU_SETSIZE, so it is in range.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slowdown_applies_to_work_that_starts_after_the_change() {
        let t0 = Instant::now();
        let at = t0 + Duration::from_secs(5);
        let base = Duration::from_millis(20);
        assert_eq!(service_at(base, None, at), base);
        assert_eq!(service_at(base, Some(at), t0), base);
        assert_eq!(service_at(base, Some(at), at), Duration::from_millis(60));
        assert_eq!(
            service_at(Duration::MAX, Some(at), at),
            Duration::MAX,
            "saturates instead of panicking"
        );
    }

    #[test]
    fn a_hog_dropped_before_its_time_never_starts() {
        let hog = Hog::start_at(Instant::now() + Duration::from_secs(3600)).unwrap();
        drop(hog); // returns promptly: the waiting thread sees the stop flag
    }
}
