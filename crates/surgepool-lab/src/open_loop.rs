//! Open-loop load: requests arrive on a fixed schedule, whatever the system under test does.
//!
//! A closed-loop generator (send, wait for the answer, send the next) slows down when the
//! server slows down and so never measures the overload it is meant to create; that is
//! *coordinated omission*. Here request `i` is due at `start + i / rate`, and carries that
//! **intended** arrival time: latency is measured from it, so a request that the generator
//! itself could only hand over late still counts its full delay.
//!
//! The generator runs on its own OS thread (not a tokio worker): CPU-bound work that blocks
//! the runtime's workers must not be able to starve the load, or the experiment would
//! quietly offer less than it says. The rate actually achieved is measured and reported.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The shortest sleep between two hand-overs. The generator never spins: at 50,000 req/s
/// (an arrival every 20 µs) spinning for each one took 33 % of a 2-core machine's CPU
/// (`perf record`: the generator thread, in `clock_gettime` and this loop) away from the work
/// it was loading. Each arrival carries its intended time, so waking late only hands over a
/// small burst (about 10 arrivals at 50,000 req/s); their latency still counts from the
/// schedule.
const MIN_SLEEP: Duration = Duration::from_micros(100);

/// Never sleep longer than this, so a stop request is seen quickly.
const MAX_SLEEP: Duration = Duration::from_millis(2);

/// How often the time is re-read while handing over a burst of due requests.
const BURST_CHECK: u64 = 1024;

/// One request as the generator hands it over.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival {
    /// When the schedule said it arrives. Latency is measured from here.
    pub(crate) intended: Instant,
}

/// The schedule: a constant rate for a duration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    /// Requests per second.
    pub(crate) rate: f64,
    /// How long arrivals go on.
    pub(crate) duration: Duration,
}

/// What the generator did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadReport {
    /// Requests handed over.
    pub(crate) offered: u64,
    /// Requests the schedule asked for (`rate × duration`).
    pub(crate) scheduled: u64,
    /// Offered requests per second of the schedule's duration.
    pub(crate) achieved_rps: f64,
    /// How late the last hand-over was against its intended time (how far behind the
    /// generator fell; 0 when it kept up).
    pub(crate) final_lag: Duration,
}

/// Shared view of a running generator: how many requests it has offered, and a stop switch.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoadProgress {
    offered: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl LoadProgress {
    /// Requests offered so far.
    pub(crate) fn offered(&self) -> u64 {
        self.offered.load(Ordering::Relaxed)
    }

    /// Asks the generator to stop early (it returns at its next check, within ~2 ms).
    #[cfg(test)]
    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Schedule {
    /// Number of requests the schedule asks for.
    pub(crate) fn scheduled(&self) -> u64 {
        (self.rate * self.duration.as_secs_f64()).round() as u64
    }

    /// Runs the schedule on a new OS thread named `name`, handing each arrival to `submit`
    /// (which must not block for long: it is the "accept" step of a server). With `runtime`,
    /// the thread enters that tokio runtime first, so `submit` may spawn onto it.
    pub(crate) fn spawn<S>(
        self,
        name: &str,
        runtime: Option<tokio::runtime::Handle>,
        progress: LoadProgress,
        submit: S,
    ) -> std::io::Result<thread::JoinHandle<LoadReport>>
    where
        S: FnMut(Arrival) + Send + 'static,
    {
        thread::Builder::new().name(name.to_owned()).spawn(move || {
            let _entered = runtime.as_ref().map(|h| h.enter());
            self.run(&progress, submit)
        })
    }

    /// Runs the schedule on the calling thread.
    pub(crate) fn run<S>(self, progress: &LoadProgress, mut submit: S) -> LoadReport
    where
        S: FnMut(Arrival),
    {
        let scheduled = self.scheduled();
        let period_ns = 1e9 / self.rate.max(f64::MIN_POSITIVE);
        let start = Instant::now();
        let end = start + self.duration;
        let intended = |seq: u64| start + Duration::from_nanos((seq as f64 * period_ns) as u64);
        let mut seq = 0u64;
        let mut final_lag = Duration::ZERO;
        'schedule: while seq < scheduled && !progress.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= end {
                break;
            }
            // Everything due by now goes out in one burst, each with its own intended time.
            let due = ((now - start).as_secs_f64() * self.rate).floor() as u64 + 1;
            let due = due.min(scheduled);
            while seq < due {
                let at = intended(seq);
                submit(Arrival { intended: at });
                seq += 1;
                progress.offered.store(seq, Ordering::Relaxed);
                if seq.is_multiple_of(BURST_CHECK) {
                    let now = Instant::now();
                    final_lag = now.saturating_duration_since(at);
                    if now >= end || progress.stop.load(Ordering::Relaxed) {
                        break 'schedule;
                    }
                }
            }
            final_lag = Instant::now().saturating_duration_since(intended(seq - 1));
            let wait = intended(seq).saturating_duration_since(Instant::now());
            thread::sleep(wait.clamp(MIN_SLEEP, MAX_SLEEP));
        }
        LoadReport {
            offered: seq,
            scheduled,
            achieved_rps: seq as f64 / self.duration.as_secs_f64().max(f64::MIN_POSITIVE),
            final_lag,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_follow_the_schedule_not_the_handover() {
        let schedule = Schedule {
            rate: 1000.0,
            duration: Duration::from_millis(50),
        };
        let mut arrivals = Vec::new();
        let report = schedule.run(&LoadProgress::default(), |a| arrivals.push(a));
        assert!(report.offered <= 50);
        assert_eq!(report.offered as usize, arrivals.len());
        // Intended times are exactly 1 ms apart, whatever the
        // thread's actual timing was.
        for w in arrivals.windows(2) {
            assert_eq!(w[1].intended - w[0].intended, Duration::from_millis(1));
        }
    }

    /// The generator shares the machine with the work it loads: at 50,000 req/s it used to
    /// spin between arrivals (20 µs apart) and took a third of a 2-core machine. Sleeping, it
    /// uses a few percent of its thread's wall time; spinning, nearly all of it whenever it
    /// has a core (a loaded machine can only make the old behaviour look better, never make
    /// this one fail).
    #[test]
    fn the_generator_sleeps_between_arrivals_instead_of_spinning() {
        let Some(cpu_before) = crate::work::thread_cpu_time() else {
            return; // no thread clock on this platform
        };
        let wall = Instant::now();
        let report = Schedule {
            rate: 50_000.0,
            duration: Duration::from_millis(300),
        }
        .run(&LoadProgress::default(), |a| {
            std::hint::black_box(a);
        });
        let wall = wall.elapsed();
        let cpu = crate::work::thread_cpu_time().unwrap_or_default() - cpu_before;
        assert!(report.offered > 0);
        assert!(
            cpu < wall / 4,
            "the generator used {cpu:?} of CPU in {wall:?}: it spins"
        );
    }

    #[test]
    fn stop_ends_the_schedule() {
        let progress = LoadProgress::default();
        progress.stop();
        let report = Schedule {
            rate: 10.0,
            duration: Duration::from_secs(3600),
        }
        .run(&progress, |_| {});
        assert_eq!(report.offered, 0);
        assert_eq!(report.scheduled, 36_000);
    }
}
