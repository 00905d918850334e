//! The reference model shared by `pool_ops` and `blocking_ops`: a fixed-limit pool with a
//! FIFO queue whose tasks finish only when the input says so (or at once), so that every
//! counter is exact once the pool has settled.

use std::collections::VecDeque;
use std::time::Duration;

use arbitrary::Arbitrary;
use surgepool::{ShutdownReport, Snapshot};

/// The counters the model predicts, in the order of [`Model::expected`].
pub fn counts(s: &Snapshot) -> [u64; 10] {
    [
        s.submitted,
        s.rejected,
        s.accepted,
        s.completed,
        s.panicked,
        s.cancelled,
        s.shed,
        s.queued,
        s.running,
        s.limit,
    ]
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Returns at once.
    Ready,
    /// Panics at its first poll.
    Panic,
    /// Returns once released.
    Gated,
    /// Panics once released.
    GatedPanic,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Wait {
    Millis(u16),
    /// Duration::MAX: no deadline at all.
    Max,
}

impl Wait {
    pub fn duration(self) -> Duration {
        match self {
            Wait::Millis(ms) => Duration::from_millis(u64::from(ms)),
            Wait::Max => Duration::MAX,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum End {
    Completed,
    Panicked,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum State {
    Queued,
    Running,
    Done(End),
}

#[derive(Debug)]
pub struct Task {
    pub kind: Kind,
    pub released: bool,
    pub state: State,
}

/// What a fixed-limit pool with a FIFO queue must do, step by step.
#[derive(Debug, Default)]
pub struct Model {
    pub limit: usize,
    pub capacity: usize,
    pub closed: bool,
    pub shutdown_began: bool,
    pub submitted: u64,
    pub rejected: u64,
    pub completed: u64,
    pub panicked: u64,
    pub cancelled: u64,
    /// Finished (but not cancelled) after a shutdown began.
    pub drained: u64,
    /// Cancelled at a shutdown deadline.
    pub deadline_cancelled: u64,
    /// Some shutdown's grace ran out with work live: every later report says `timed_out`
    /// (the pools remember the outcome; reports are the same for every caller).
    pub timed_out: bool,
    pub tasks: Vec<Task>,
    pub queue: VecDeque<usize>,
    pub running: Vec<usize>,
}

impl Model {
    pub fn live(&self) -> usize {
        self.queue.len() + self.running.len()
    }

    pub fn has_room(&self) -> bool {
        !self.closed && self.live() < self.limit + self.capacity
    }

    pub fn accept(&mut self, kind: Kind) -> usize {
        self.submitted += 1;
        let id = self.tasks.len();
        self.tasks.push(Task {
            kind,
            released: false,
            state: State::Queued,
        });
        self.queue.push_back(id);
        id
    }

    pub fn reject(&mut self) {
        self.submitted += 1;
        self.rejected += 1;
    }

    pub fn end(&mut self, id: usize, end: End) {
        self.tasks[id].state = State::Done(end);
        match end {
            End::Completed => self.completed += 1,
            End::Panicked => self.panicked += 1,
            End::Cancelled => self.cancelled += 1,
        }
        if self.shutdown_began && end != End::Cancelled {
            self.drained += 1;
        }
    }

    /// What the runtime does once every task is idle again: released tasks finish, and
    /// freed slots take queued tasks in order.
    pub fn settle(&mut self) {
        loop {
            let finished: Vec<usize> = self
                .running
                .iter()
                .copied()
                .filter(|&id| {
                    let t = &self.tasks[id];
                    matches!(t.kind, Kind::Ready | Kind::Panic) || t.released
                })
                .collect();
            for &id in &finished {
                let end = match self.tasks[id].kind {
                    Kind::Ready | Kind::Gated => End::Completed,
                    Kind::Panic | Kind::GatedPanic => End::Panicked,
                };
                self.end(id, end);
            }
            self.running.retain(|id| !finished.contains(id));
            let mut started = false;
            while self.running.len() < self.limit {
                let Some(id) = self.queue.pop_front() else {
                    break;
                };
                self.tasks[id].state = State::Running;
                self.running.push(id);
                started = true;
            }
            if finished.is_empty() && !started {
                return;
            }
        }
    }

    pub fn cancel(&mut self, id: usize) {
        match self.tasks[id].state {
            State::Queued => self.queue.retain(|&q| q != id),
            State::Running => self.running.retain(|&r| r != id),
            State::Done(_) => return,
        }
        self.end(id, End::Cancelled);
    }

    /// A shutdown's grace ran out: everything still live is cancelled.
    pub fn deadline(&mut self) {
        let live: Vec<usize> = self.queue.iter().chain(&self.running).copied().collect();
        for id in live {
            self.cancel(id);
            self.deadline_cancelled += 1;
        }
    }

    /// The snapshot the pool must show now (latency figures aside).
    pub fn expected(&self) -> [u64; 10] {
        [
            self.submitted,
            self.rejected,
            self.submitted - self.rejected,
            self.completed,
            self.panicked,
            self.cancelled,
            0,
            self.queue.len() as u64,
            self.running.len() as u64,
            self.limit as u64,
        ]
    }

    /// Checks a pool's snapshot against the model, and the identities.
    pub fn check(&self, s: &Snapshot, closed: bool, step: usize) {
        assert_eq!(s.submitted, s.accepted + s.rejected, "step {step}: {s:?}");
        assert_eq!(
            s.accepted,
            s.completed + s.panicked + s.cancelled + s.shed + s.queued + s.running,
            "step {step}: {s:?}"
        );
        assert_eq!(
            counts(s),
            self.expected(),
            "step {step}: pool {s:?}\nmodel {self:?}"
        );
        assert_eq!(closed, self.closed, "step {step}");
    }

    /// `timed_out`: whether this call's grace ran out with work live. The report must say
    /// whether any call's did.
    pub fn check_report(&mut self, report: ShutdownReport, timed_out: bool, step: usize) {
        self.timed_out |= timed_out;
        let timed_out = self.timed_out;
        assert_eq!(report.drained, self.drained, "step {step}: {report:?}");
        assert_eq!(
            report.cancelled, self.deadline_cancelled,
            "step {step}: {report:?}"
        );
        assert_eq!(report.timed_out, timed_out, "step {step}: {report:?}");
    }
}
