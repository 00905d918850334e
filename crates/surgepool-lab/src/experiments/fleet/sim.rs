//! The simulated downstream and the bookkeeping every strategy shares: which job ids ran
//! (to count duplicates and lost jobs) and latency from each job's intended arrival.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

/// A payload: the job's sequence number and its intended arrival, µs after the run's start.
pub(super) fn encode(seq: u64, intended_us: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&intended_us.to_le_bytes());
    b
}

fn decode(payload: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_le_bytes(payload.get(0..8)?.try_into().ok()?);
    let at = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((seq, at))
}

/// One strategy's run: the downstream it calls and what it observed.
pub(super) struct Ctx {
    pub(super) start: Instant,
    /// The shared downstream (a database, an API): at most this many calls at once; the
    /// rest wait for it. This is what a fixed concurrency piles work onto when it slows.
    downstream: Semaphore,
    /// The downstream's current service time, µs (tripled mid-run by the slowdown).
    service_us: AtomicU64,
    slo_us: u64,
    /// Completions per job sequence number: > 1 is a duplicate.
    runs: Vec<AtomicU32>,
    pub(super) completed: AtomicU64,
    /// Completions of jobs the producer's local pool ran.
    pub(super) local_done: AtomicU64,
    pub(super) within_slo: AtomicU64,
    /// The highest end-to-end latency since the sampler last looked, µs.
    window_max_us: AtomicU64,
    /// End-to-end latency from intended arrival, µs.
    e2e: Mutex<Histogram<u64>>,
    /// Time inside the handler (waiting for the downstream + its service), µs.
    run: Mutex<Histogram<u64>>,
}

fn hist() -> Histogram<u64> {
    // 1 µs .. 1 h, 3 significant digits: the bounds are valid, so this cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| Histogram::new(3).unwrap())
}

impl Ctx {
    pub(super) fn new(jobs: u64, downstream: usize, service: Duration, slo: Duration) -> Arc<Ctx> {
        Arc::new(Ctx {
            start: Instant::now(),
            // Clamped: `Semaphore::new` panics past MAX_PERMITS, and a CLI value must not.
            downstream: Semaphore::new(downstream.clamp(1, Semaphore::MAX_PERMITS)),
            service_us: AtomicU64::new(micros(service)),
            slo_us: micros(slo),
            runs: (0..jobs).map(|_| AtomicU32::new(0)).collect(),
            completed: AtomicU64::new(0),
            local_done: AtomicU64::new(0),
            within_slo: AtomicU64::new(0),
            window_max_us: AtomicU64::new(0),
            e2e: Mutex::new(hist()),
            run: Mutex::new(hist()),
        })
    }

    pub(super) fn now_us(&self) -> u64 {
        micros(self.start.elapsed())
    }

    pub(super) fn set_service(&self, service: Duration) {
        self.service_us.store(micros(service), Ordering::Relaxed);
    }

    /// The handler both paths share: wait for the downstream, hold it for the service time,
    /// then record the job as done.
    pub(super) async fn handle(self: Arc<Self>, payload: &[u8], local: bool) -> Result<(), String> {
        let (seq, intended) = decode(payload).ok_or("malformed payload")?;
        let began = Instant::now();
        {
            let _permit = self
                .downstream
                .acquire()
                .await
                .map_err(|_| "downstream closed")?;
            let service = self.service_us.load(Ordering::Relaxed);
            tokio::time::sleep(Duration::from_micros(service)).await;
        }
        let ran = micros(began.elapsed());
        let e2e = self.now_us().saturating_sub(intended);
        if let Some(slot) = usize::try_from(seq).ok().and_then(|i| self.runs.get(i)) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        self.completed.fetch_add(1, Ordering::Relaxed);
        if local {
            self.local_done.fetch_add(1, Ordering::Relaxed);
        }
        if e2e <= self.slo_us {
            self.within_slo.fetch_add(1, Ordering::Relaxed);
        }
        self.window_max_us.fetch_max(e2e, Ordering::Relaxed);
        let _ = lock(&self.e2e).record(e2e.max(1));
        let _ = lock(&self.run).record(ran.max(1));
        Ok(())
    }

    /// The highest end-to-end latency since the last call, µs (for the charts over time).
    pub(super) fn take_window_max_us(&self) -> u64 {
        self.window_max_us.swap(0, Ordering::Relaxed)
    }

    /// (distinct jobs that ran, duplicate runs).
    pub(super) fn distinct_and_duplicates(&self) -> (u64, u64) {
        let mut distinct = 0;
        let mut dups = 0;
        for r in &self.runs {
            let n = u64::from(r.load(Ordering::Relaxed));
            if n > 0 {
                distinct += 1;
                dups += n - 1;
            }
        }
        (distinct, dups)
    }

    /// p50, p99 and max of end-to-end latency, ms.
    pub(super) fn e2e_ms(&self) -> Quantiles {
        Quantiles::of(&lock(&self.e2e))
    }

    /// p50, p99 and max of the time spent in the handler, ms.
    pub(super) fn run_ms(&self) -> Quantiles {
        Quantiles::of(&lock(&self.run))
    }
}

/// Latency quantiles, ms.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(super) struct Quantiles {
    pub(super) p50: f64,
    pub(super) p99: f64,
    pub(super) max: f64,
}

impl Quantiles {
    fn of(h: &Histogram<u64>) -> Quantiles {
        if h.is_empty() {
            return Quantiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Quantiles {
            p50: ms(h.value_at_quantile(0.5)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while recording leaves a histogram that is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
