//! The child's own accounting: counters for every request outcome, latency histograms, and
//! the tracked future that feeds them.
//!
//! Every accepted request is wrapped in a [`Tracked`] future whose drop guard records how it
//! ended: finished (completed), dropped while the thread unwinds (failed), dropped after it
//! started or once the run is draining (cancelled), dropped before it ever ran (shed). So
//! our counts do not depend on the strategy under test reporting honestly; for the surgepool
//! pools they are cross-checked against the pool's own snapshot at the end.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::change;
use crate::scenario_json::{LatencyMs, Phase};
use crate::work::Work;

/// Latencies are recorded in microseconds, from 1 µs to one hour, 3 significant digits.
const MAX_LATENCY_US: u64 = 3_600_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid")
}

/// Counters and histograms shared by the generator, the work and the sampler.
#[derive(Debug)]
pub(crate) struct Recorder {
    accepted: AtomicU64,
    rejected: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    shed: AtomicU64,
    cancelled: AtomicU64,
    /// Completions whose latency from intended arrival was at most `slo_us`.
    within_slo: AtomicU64,
    slo_us: u64,
    /// When arrivals began and the midpoint that splits them into halves (unset: all in
    /// the first half).
    halves: OnceLock<(Instant, Instant)>,
    /// Per half: requests offered, completed, completed within the SLO.
    arrived: [AtomicU64; 2],
    completed_in: [AtomicU64; 2],
    within_slo_in: [AtomicU64; 2],
    /// `--scenario slowdown`: work that starts from this instant on takes longer.
    slow_from: OnceLock<Instant>,
    /// Set when the run stops waiting for work to finish: anything dropped from then on was
    /// cancelled by the shutdown, not shed by the strategy.
    draining: AtomicBool,
    histograms: Mutex<Histograms>,
}

#[derive(Debug)]
struct Histograms {
    /// Completed requests, whole run.
    total: Histogram<u64>,
    /// Completed requests since the last sample.
    interval: Histogram<u64>,
    /// Rejected requests: intended arrival to the refusal.
    rejection: Histogram<u64>,
    /// Completed requests by the half in which they were due.
    halves: [Histogram<u64>; 2],
}

/// The counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Counts {
    pub(crate) accepted: u64,
    pub(crate) rejected: u64,
    pub(crate) completed: u64,
    pub(crate) failed: u64,
    pub(crate) shed: u64,
    pub(crate) cancelled: u64,
    /// Completed within the SLO (a subset of `completed`).
    #[serde(default)]
    pub(crate) within_slo: u64,
}

impl Counts {
    /// Accepted and not yet ended: queued or running.
    pub(crate) fn in_flight(&self) -> u64 {
        self.accepted
            .saturating_sub(self.completed + self.failed + self.shed + self.cancelled)
    }
}

/// What one sampling interval saw.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Interval {
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    /// Cumulative latency of all completed requests so far.
    pub(crate) total: LatencyMs,
}

impl Recorder {
    /// A recorder that counts completions within `slo` of their intended arrival.
    pub(crate) fn new(slo: Duration) -> Arc<Recorder> {
        Arc::new(Recorder {
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            within_slo: AtomicU64::new(0),
            slo_us: micros(slo),
            halves: OnceLock::new(),
            slow_from: OnceLock::new(),
            arrived: Default::default(),
            completed_in: Default::default(),
            within_slo_in: Default::default(),
            draining: AtomicBool::new(false),
            histograms: Mutex::new(Histograms {
                total: histogram(),
                interval: histogram(),
                rejection: histogram(),
                halves: [histogram(), histogram()],
            }),
        })
    }

    /// Arrivals began at `start`; requests due from `midpoint` on belong to the second half.
    /// Set once, before the first arrival.
    pub(crate) fn split_halves(&self, start: Instant, midpoint: Instant) {
        let _ = self.halves.set((start, midpoint));
    }

    /// Work that starts from `at` on takes [`change::SLOWDOWN_FACTOR`]× its service time.
    pub(crate) fn slow_down_from(&self, at: Instant) {
        let _ = self.slow_from.set(at);
    }

    fn half(&self, intended: Instant) -> usize {
        match self.halves.get() {
            Some(&(_, midpoint)) if intended >= midpoint => 1,
            _ => 0,
        }
    }

    /// The generator handed over the request due at `intended` (accepted or not).
    pub(crate) fn arrived(&self, intended: Instant) {
        self.arrived[self.half(intended)].fetch_add(1, Ordering::Relaxed);
    }

    /// The two halves' figures; `duration` is the length of the arrivals, `mean_limits` the
    /// strategy's mean limit in each half (filled in by the parent from its samples).
    pub(crate) fn phases(&self, duration: Duration) -> Vec<Phase> {
        let h = self.lock();
        let half = duration.as_secs_f64() / 2.0;
        (0..2)
            .map(|i| {
                let within = self.within_slo_in[i].load(Ordering::SeqCst);
                let completed = self.completed_in[i].load(Ordering::SeqCst);
                Phase {
                    name: ["first", "second"][i].to_owned(),
                    from_s: half * i as f64,
                    to_s: half * (i + 1) as f64,
                    offered: self.arrived[i].load(Ordering::SeqCst),
                    completed,
                    within_slo: within,
                    goodput_rps: completed as f64 / half.max(1e-9),
                    slo_goodput_rps: within as f64 / half.max(1e-9),
                    latency_ms: summary(&h.halves[i]),
                    mean_limit: 0.0,
                    slo_ms: self.slo_us as f64 / 1000.0
                        * if i == 1 && self.slow_from.get().is_some() {
                            f64::from(change::SLOWDOWN_FACTOR)
                        } else {
                            1.0
                        },
                }
            })
            .collect()
    }

    /// A request was accepted by the strategy.
    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was refused; `intended` is its scheduled arrival.
    pub(crate) fn rejected(&self, intended: Instant) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        let us = micros(intended.elapsed());
        self.lock().rejection.saturating_record(us);
    }

    /// From now on, an unfinished request that is dropped was cancelled by the shutdown.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub(crate) fn counts(&self) -> Counts {
        // Outcomes first, then `accepted`: a request is counted accepted before it can end,
        // so reading in this order never shows more ended than accepted. Likewise
        // `within_slo` before `completed`.
        let within_slo = self.within_slo.load(Ordering::SeqCst);
        let completed = self.completed.load(Ordering::SeqCst);
        let failed = self.failed.load(Ordering::SeqCst);
        let shed = self.shed.load(Ordering::SeqCst);
        let cancelled = self.cancelled.load(Ordering::SeqCst);
        Counts {
            within_slo,
            accepted: self.accepted.load(Ordering::SeqCst),
            rejected: self.rejected.load(Ordering::SeqCst),
            completed,
            failed,
            shed,
            cancelled,
        }
    }

    /// Takes the interval histogram (resetting it) and summarises both.
    pub(crate) fn take_interval(&self) -> Interval {
        let mut h = self.lock();
        let interval = Interval {
            p50_ms: ms(h.interval.value_at_quantile(0.50)),
            p99_ms: ms(h.interval.value_at_quantile(0.99)),
            total: summary(&h.total),
        };
        h.interval.reset();
        interval
    }

    /// Completed-latency and rejection-latency summaries.
    pub(crate) fn latencies(&self) -> (LatencyMs, LatencyMs) {
        let h = self.lock();
        (summary(&h.total), summary(&h.rejection))
    }

    /// A request due at `intended` completed; `slowed`: its work ran at the slowdown's
    /// service time, and its SLO grows by the same factor (the SLO is a multiple of the
    /// service time, so the slowed half stays measurable instead of missing it by design).
    fn completed(&self, intended: Instant, slowed: bool) {
        let us = micros(intended.elapsed());
        let slo_us = if slowed {
            self.slo_us
                .saturating_mul(u64::from(change::SLOWDOWN_FACTOR))
        } else {
            self.slo_us
        };
        let half = self.half(intended);
        {
            let mut h = self.lock();
            h.total.saturating_record(us);
            h.interval.saturating_record(us);
            h.halves[half].saturating_record(us);
        }
        self.completed_in[half].fetch_add(1, Ordering::SeqCst);
        self.completed.fetch_add(1, Ordering::SeqCst);
        if us <= slo_us {
            self.within_slo_in[half].fetch_add(1, Ordering::SeqCst);
            // After `completed`, and `counts` reads it before `completed`: a reader never
            // sees more completions within the SLO than completions.
            self.within_slo.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Histograms> {
        self.histograms.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_LATENCY_US)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn summary(h: &Histogram<u64>) -> LatencyMs {
    if h.is_empty() {
        return LatencyMs::default();
    }
    LatencyMs {
        mean: h.mean() / 1000.0,
        p50: ms(h.value_at_quantile(0.50)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}

/// One request's work, wrapped so its outcome is always counted.
pub(crate) struct Tracked {
    work: Work,
    /// The work's future, made at the first poll: its service time is decided when the work
    /// starts (a slowdown hits work that starts after it), and a refused request never
    /// allocates one.
    running: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    guard: Guard,
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked")
            .field("guard", &self.guard)
            .finish()
    }
}

#[derive(Debug)]
struct Guard {
    recorder: Arc<Recorder>,
    intended: Instant,
    /// `false` while the strategy has not accepted the request (a refused future comes back
    /// and is dropped: that is a rejection, counted by the generator, not a shed).
    armed: bool,
    started: bool,
    /// The work runs at the slowdown's service time.
    slowed: bool,
    done: bool,
}

impl Tracked {
    /// Wraps `work` for the request that was due at `intended`. Armed: dropping it unfinished
    /// counts an outcome. Call [`Tracked::disarm`] on a future the strategy refused.
    pub(crate) fn new(recorder: Arc<Recorder>, intended: Instant, work: Work) -> Tracked {
        Tracked {
            work,
            running: None,
            guard: Guard {
                recorder,
                intended,
                armed: true,
                started: false,
                slowed: false,
                done: false,
            },
        }
    }

    /// The strategy refused this request: dropping it counts nothing.
    pub(crate) fn disarm(mut self) {
        self.guard.armed = false;
    }
}

impl Future for Tracked {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.guard.started = true;
        let guard = &mut this.guard;
        let running = this.running.get_or_insert_with(|| {
            let mut work = this.work;
            let slow_from = guard.recorder.slow_from.get().copied();
            let service = change::service_at(work.service, slow_from, Instant::now());
            guard.slowed = service != work.service;
            work.service = service;
            Box::pin(work.run())
        });
        match running.as_mut().poll(cx) {
            Poll::Ready(()) => {
                if !this.guard.done {
                    this.guard.done = true;
                    this.guard
                        .recorder
                        .completed(this.guard.intended, this.guard.slowed);
                }
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.armed || self.done {
            return;
        }
        let r = &self.recorder;
        let counter = if std::thread::panicking() {
            &r.failed
        } else if self.started || r.draining.load(Ordering::SeqCst) {
            &r.cancelled
        } else {
            &r.shed
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work::WorkKind;

    fn work() -> Work {
        Work {
            kind: WorkKind::Sleep,
            service: Duration::from_millis(5),
            alloc_bytes: 4096,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_outcome_is_counted_once() {
        let r = Recorder::new(Duration::from_secs(1));
        let now = Instant::now();
        // completed
        r.accepted();
        Tracked::new(r.clone(), now, work()).await;
        // shed: dropped before running
        r.accepted();
        drop(Tracked::new(r.clone(), now, work()));
        // cancelled: dropped after it started
        r.accepted();
        let mut started = Box::pin(Tracked::new(r.clone(), now, work()));
        assert!(futures_poll_once(started.as_mut()).is_pending());
        drop(started);
        // refused: counts nothing but the rejection
        Tracked::new(r.clone(), now, work()).disarm();
        r.rejected(now);
        // draining: an unrun drop is a cancellation
        r.accepted();
        r.start_draining();
        drop(Tracked::new(r.clone(), now, work()));

        let c = r.counts();
        assert_eq!(
            c,
            Counts {
                accepted: 4,
                rejected: 1,
                completed: 1,
                failed: 0,
                shed: 1,
                cancelled: 2,
                within_slo: 1,
            }
        );
        assert_eq!(c.in_flight(), 0);
        assert!(r.take_interval().p50_ms > 0.0);
        assert_eq!(r.take_interval().p50_ms, 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn slo_and_halves_count_by_intended_arrival() {
        // Latencies are read on the real clock: one request due 100 s ago (far past a 50 s
        // SLO), the others due now or later (microseconds: well within it).
        let r = Recorder::new(Duration::from_secs(50));
        let now = Instant::now();
        let long_ago = now.checked_sub(Duration::from_secs(100)).unwrap();
        let later = now + Duration::from_secs(1);
        r.split_halves(long_ago, now);
        for intended in [long_ago, now, later] {
            r.arrived(intended);
            r.accepted();
            Tracked::new(r.clone(), intended, work()).await;
        }
        let c = r.counts();
        assert_eq!((c.completed, c.within_slo), (3, 2));
        let halves = r.phases(Duration::from_secs(10));
        let figures: Vec<_> = halves
            .iter()
            .map(|p| (p.name.as_str(), p.offered, p.completed, p.within_slo))
            .collect();
        assert_eq!(figures, [("first", 1, 1, 0), ("second", 2, 2, 2)]);
        assert_eq!((halves[1].from_s, halves[1].to_s), (5.0, 10.0));
        assert_eq!(halves[1].slo_goodput_rps, 2.0 / 5.0);
        assert!(halves[0].latency_ms.p50 >= 99_000.0);
    }

    #[tokio::test(start_paused = true)]
    async fn work_that_starts_after_a_slowdown_takes_three_times_as_long() {
        let r = Recorder::new(Duration::from_secs(1));
        let started = tokio::time::Instant::now();
        r.accepted();
        Tracked::new(r.clone(), Instant::now(), work()).await;
        assert_eq!(started.elapsed(), Duration::from_millis(5));
        // The slowdown begins now: work started from now on takes 3 x 5 ms.
        r.slow_down_from(Instant::now());
        let started = tokio::time::Instant::now();
        r.accepted();
        Tracked::new(r.clone(), Instant::now(), work()).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(5) * change::SLOWDOWN_FACTOR
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slowed_work_is_judged_against_the_slowed_slo() {
        // SLO 40 s; one request due 100 s ago runs at the base service time (missed), one
        // due 100 s ago runs slowed (SLO 120 s: within).
        let r = Recorder::new(Duration::from_secs(40));
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(100))
            .unwrap();
        r.accepted();
        Tracked::new(r.clone(), long_ago, work()).await;
        assert_eq!(r.counts().within_slo, 0);
        r.slow_down_from(Instant::now());
        r.accepted();
        Tracked::new(r.clone(), long_ago, work()).await;
        assert_eq!(r.counts().within_slo, 1);
    }

    fn futures_poll_once(f: Pin<&mut Tracked>) -> Poll<()> {
        let waker = crate::experiments::overload::noop_waker();
        f.poll(&mut Context::from_waker(&waker))
    }
}
