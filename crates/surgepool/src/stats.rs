//! What a pool reports about itself: [`Snapshot`] and [`ShutdownReport`].

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::histogram::Recorder;

/// A consistent picture of a pool's accounting, taken at one instant.
///
/// The counters are cumulative since the pool was built; `queued`, `running`, `workers`
/// and `limit` are gauges. Both pools update every counter under one lock and take the
/// snapshot under it, so the identities hold in *every* snapshot (a submit that has not
/// returned yet is not counted anywhere):
///
/// * `submitted == accepted + rejected`
/// * `accepted == completed + panicked + cancelled + shed + queued + running`
///
/// # Examples
///
/// ```
/// use surgepool::Pool;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = Pool::builder().build().unwrap();
/// pool.try_submit(async {}).unwrap().await.unwrap();
/// let s = pool.snapshot();
/// assert_eq!(s.submitted, s.accepted + s.rejected);
/// assert_eq!(s.accepted, s.completed + s.panicked + s.cancelled + s.shed + s.queued + s.running);
/// assert_eq!(s.completed, 1);
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Calls that offered a job (`try_submit`, and `submit*` calls that returned).
    pub submitted: u64,
    /// Jobs handed back: full, closed or timed out.
    pub rejected: u64,
    /// Jobs the pool took; each ends as exactly one of the outcomes below.
    pub accepted: u64,
    /// Tasks that ran to completion.
    pub completed: u64,
    /// Tasks that panicked.
    pub panicked: u64,
    /// Tasks cancelled by `abort` or at a shutdown deadline.
    pub cancelled: u64,
    /// Tasks dropped before they ran (queue timeout, expired deadline, queue delay).
    pub shed: u64,
    /// Tasks waiting in the queue now.
    pub queued: u64,
    /// Tasks running now (the pool's in-flight work).
    pub running: u64,
    /// Workers alive now (busy and idle).
    pub workers: u64,
    /// The concurrency limit now.
    pub limit: u64,
    /// Time from acceptance to the start of running.
    pub queue_wait: LatencySummary,
    /// Time spent running (from the first poll or call to the end).
    pub run_time: LatencySummary,
    /// Time from acceptance to the end: queue wait plus run time.
    pub end_to_end: LatencySummary,
}

/// Summary of one latency distribution, recorded in an HDR histogram (2 significant
/// digits, so every figure is within 1% of the true value).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use surgepool::Pool;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let pool = Pool::builder().build().unwrap();
/// let sleep = tokio::time::sleep(Duration::from_millis(20));
/// pool.try_submit(sleep).unwrap().await.unwrap();
/// let run = pool.snapshot().run_time;
/// assert_eq!(run.count, 1);
/// assert!(run.p99 >= Duration::from_millis(19) && run.max >= run.p50);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LatencySummary {
    /// How many tasks were recorded.
    pub count: u64,
    /// Mean.
    pub mean: Duration,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest recorded.
    pub max: Duration,
}

/// What `shutdown` or `shutdown_timeout` did.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use surgepool::Pool;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let pool = Pool::builder().build().unwrap();
/// let _slow = pool.try_submit(tokio::time::sleep(Duration::from_secs(60))).unwrap();
/// let report = pool.shutdown_timeout(Duration::from_secs(1)).await;
/// assert!(report.timed_out);
/// assert_eq!(report.cancelled, 1);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Tasks that finished (by any outcome but cancellation) after shutdown began: after the
    /// pool was closed, by `close` or by the first shutdown call.
    pub drained: u64,
    /// Tasks cancelled at the grace deadline, queued ones included.
    pub cancelled: u64,
    /// `true` when the grace deadline passed with work still unfinished.
    pub timed_out: bool,
}

/// The three latency histograms of a pool. Lives inside the pool's locked state.
#[derive(Debug, Clone)]
pub(crate) struct Latencies {
    queue_wait: Recorder,
    run_time: Recorder,
    end_to_end: Recorder,
}

fn summary(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    LatencySummary {
        count: h.len(),
        mean: Duration::from_nanos(h.mean() as u64),
        p50: Duration::from_nanos(h.value_at_quantile(0.50)),
        p99: Duration::from_nanos(h.value_at_quantile(0.99)),
        max: Duration::from_nanos(h.max()),
    }
}

impl Latencies {
    pub(crate) fn new() -> Latencies {
        Latencies {
            queue_wait: Recorder::new(),
            run_time: Recorder::new(),
            end_to_end: Recorder::new(),
        }
    }

    /// Records a queue wait, in nanoseconds.
    pub(crate) fn record_queue_wait(&mut self, nanos: u64) {
        self.queue_wait.record(nanos);
    }

    /// Records a run time and the end-to-end time (queue wait + run time), in nanoseconds.
    pub(crate) fn record_run(&mut self, queue_wait: u64, run_time: u64) {
        self.run_time.record(run_time);
        self.end_to_end.record(queue_wait.saturating_add(run_time));
    }

    /// The three recorders: queue wait, run time, end to end.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn recorders(&self) -> [&Recorder; 3] {
        [&self.queue_wait, &self.run_time, &self.end_to_end]
    }

    pub(crate) fn fill(&self, snapshot: &mut Snapshot) {
        snapshot.queue_wait = summary(&self.queue_wait.to_histogram());
        snapshot.run_time = summary(&self.run_time.to_histogram());
        snapshot.end_to_end = summary(&self.end_to_end.to_histogram());
    }
}
