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
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::scenario_json::LatencyMs;
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
    pub(crate) fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            histograms: Mutex::new(Histograms {
                total: histogram(),
                interval: histogram(),
                rejection: histogram(),
            }),
        })
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
        // so reading in this order never shows more ended than accepted.
        let completed = self.completed.load(Ordering::SeqCst);
        let failed = self.failed.load(Ordering::SeqCst);
        let shed = self.shed.load(Ordering::SeqCst);
        let cancelled = self.cancelled.load(Ordering::SeqCst);
        Counts {
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

    fn completed(&self, intended: Instant) {
        let us = micros(intended.elapsed());
        {
            let mut h = self.lock();
            h.total.saturating_record(us);
            h.interval.saturating_record(us);
        }
        self.completed.fetch_add(1, Ordering::SeqCst);
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
    work: Pin<Box<dyn Future<Output = ()> + Send>>,
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
    done: bool,
}

impl Tracked {
    /// Wraps `work` for the request that was due at `intended`. Armed: dropping it unfinished
    /// counts an outcome. Call [`Tracked::disarm`] on a future the strategy refused.
    pub(crate) fn new(recorder: Arc<Recorder>, intended: Instant, work: Work) -> Tracked {
        Tracked {
            work: Box::pin(work.run()),
            guard: Guard {
                recorder,
                intended,
                armed: true,
                started: false,
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
        match this.work.as_mut().poll(cx) {
            Poll::Ready(()) => {
                if !this.guard.done {
                    this.guard.done = true;
                    this.guard.recorder.completed(this.guard.intended);
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
        let r = Recorder::new();
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
            }
        );
        assert_eq!(c.in_flight(), 0);
        assert!(r.take_interval().p50_ms > 0.0);
        assert_eq!(r.take_interval().p50_ms, 0.0);
    }

    fn futures_poll_once(f: Pin<&mut Tracked>) -> Poll<()> {
        let waker = crate::experiments::overload::noop_waker();
        f.poll(&mut Context::from_waker(&waker))
    }
}
