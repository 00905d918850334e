//! Exact accounting shared by both pools. Every counter changes under the pool's lock, and
//! snapshots are taken under it, so the identities of [`Snapshot`] hold in every snapshot.

use crate::stats::{Latencies, ShutdownReport, Snapshot};
use crate::sync::{AtomicU64, Ordering};

/// The tasks whose end was *published* (their handles have their outcomes, their user values
/// are dropped), counted without the pool's lock, and whether the pool is closing, in one
/// atomic. A task is counted as ended under the lock and published after it; a pool is
/// drained only once the two counts meet, so `shutdown()` never returns before a handle has
/// its result.
///
/// Flag and count share a word so that they need no `SeqCst` handshake: both change by
/// read-modify-writes of one location, which are totally ordered. A publisher whose add
/// comes after the close sees the flag and signals the drain (under the lock); one whose
/// add comes before it is seen by every later drain check of the closing thread.
#[derive(Debug)]
pub(crate) struct Published(AtomicU64);

/// The closing flag; the count lives in the other 63 bits (it never gets near them).
const CLOSING: u64 = 1 << 63;

impl Published {
    pub(crate) fn new() -> Published {
        Published(AtomicU64::new(0))
    }

    /// The pool closes (under its lock).
    pub(crate) fn close(&self) {
        self.0.fetch_or(CLOSING, Ordering::AcqRel);
    }

    /// Counts `n` tasks as published; `true` if the pool is closing, so that the caller
    /// must take the lock and signal a drain.
    pub(crate) fn add(&self, n: u64) -> bool {
        self.0.fetch_add(n, Ordering::AcqRel) & CLOSING != 0
    }

    /// The tasks published so far.
    pub(crate) fn count(&self) -> u64 {
        self.0.load(Ordering::Acquire) & !CLOSING
    }
}

/// How an accepted task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Completed,
    Panicked,
    Cancelled,
    Shed,
}

#[derive(Debug)]
pub(crate) struct Accounting {
    pub(crate) submitted: u64,
    pub(crate) rejected: u64,
    pub(crate) accepted: u64,
    pub(crate) completed: u64,
    pub(crate) panicked: u64,
    pub(crate) cancelled: u64,
    pub(crate) shed: u64,
    pub(crate) latencies: Latencies,
    /// Outcomes other than cancellation reached since shutdown began
    /// (`ShutdownReport::drained`, documented as excluding every cancellation: by the
    /// grace deadline, and by `abort` while draining).
    pub(crate) finished_since_shutdown: u64,
    /// Tasks cancelled by a shutdown deadline.
    pub(crate) cancelled_at_deadline: u64,
    pub(crate) shutting_down: bool,
    /// A shutdown's grace deadline passed before the pool had drained. Sticky: every later
    /// report says `timed_out` too, so concurrent and later shutdown calls agree.
    pub(crate) deadline_passed: bool,
}

impl Accounting {
    pub(crate) fn new() -> Accounting {
        Accounting {
            submitted: 0,
            rejected: 0,
            accepted: 0,
            completed: 0,
            panicked: 0,
            cancelled: 0,
            shed: 0,
            latencies: Latencies::new(),
            finished_since_shutdown: 0,
            cancelled_at_deadline: 0,
            shutting_down: false,
            deadline_passed: false,
        }
    }

    pub(crate) fn reject(&mut self) {
        self.submitted += 1;
        self.rejected += 1;
    }

    pub(crate) fn accept(&mut self) {
        self.submitted += 1;
        self.accepted += 1;
    }

    /// Tasks that ended, however (each accepted task ends exactly once).
    pub(crate) fn ended(&self) -> u64 {
        self.completed + self.panicked + self.cancelled + self.shed
    }

    /// Records a task's end. `run` is `(queue wait, run time)` in nanoseconds when the task
    /// ran.
    pub(crate) fn finish(&mut self, outcome: Outcome, run: Option<(u64, u64)>) {
        match outcome {
            Outcome::Completed => self.completed += 1,
            Outcome::Panicked => self.panicked += 1,
            Outcome::Cancelled => self.cancelled += 1,
            Outcome::Shed => self.shed += 1,
        }
        if self.shutting_down && outcome != Outcome::Cancelled {
            self.finished_since_shutdown += 1;
        }
        if let Some((wait, run_time)) = run {
            self.latencies.record_run(wait, run_time);
        }
    }

    /// The counters and the gauges, taken under the pool's lock; the latency histograms
    /// are copied (a few KiB) and summarised by [`Unsummarised::summarise`] without it.
    pub(crate) fn snapshot(
        &self,
        queued: usize,
        running: usize,
        workers: usize,
        limit: usize,
    ) -> Unsummarised {
        let snapshot = Snapshot {
            submitted: self.submitted,
            rejected: self.rejected,
            accepted: self.accepted,
            completed: self.completed,
            panicked: self.panicked,
            cancelled: self.cancelled,
            shed: self.shed,
            queued: queued as u64,
            running: running as u64,
            workers: workers as u64,
            limit: limit as u64,
            ..Snapshot::default()
        };
        Unsummarised {
            snapshot,
            latencies: self.latencies.clone(),
        }
    }

    /// What shutdown did, as far as this accounting knows. Once the pool has drained,
    /// nothing here changes any more, so every report taken after that is the same.
    pub(crate) fn report(&self) -> ShutdownReport {
        ShutdownReport {
            drained: self.finished_since_shutdown,
            cancelled: self.cancelled_at_deadline,
            timed_out: self.deadline_passed,
        }
    }
}

/// A snapshot whose latency figures are still histograms.
pub(crate) struct Unsummarised {
    snapshot: Snapshot,
    latencies: Latencies,
}

impl Unsummarised {
    pub(crate) fn summarise(mut self) -> Snapshot {
        self.latencies.fill(&mut self.snapshot);
        self.snapshot
    }

    /// The summarised snapshot and the raw latency counts behind it (for exporters).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn summarise_keeping(mut self) -> (Snapshot, crate::stats::Latencies) {
        self.latencies.fill(&mut self.snapshot);
        (self.snapshot, self.latencies)
    }
}

#[cfg(all(test, loom))]
mod loom;
