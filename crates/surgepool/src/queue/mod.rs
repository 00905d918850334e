//! The bounded queue both pools keep in front of their workers, with the three ways a
//! waiting job can be shed before it runs: the pool's queue timeout, the job's own
//! deadline, and CoDel queue-delay management (RFC 8289).
//!
//! Shedding happens when a worker takes the next job: a shed job never runs, its handle
//! reports `is_shed()`, and the caller counts it.

mod codel;

use std::collections::VecDeque;
use std::time::Duration;

pub(crate) use codel::Codel;

use crate::accounting::{Accounting, Outcome};
use crate::clock::{Clock, Stamp};
use crate::error::ShedReason;
use crate::limit::Limiter;

/// A waiting job and what the queue needs to know about it.
#[derive(Debug)]
pub(crate) struct Entry<J> {
    pub(crate) job: J,
    pub(crate) enqueued: Stamp,
    pub(crate) deadline: Option<Stamp>,
    pub(crate) weight: u64,
}

/// What `pop` found; with the job's time in the queue, in nanoseconds.
#[derive(Debug)]
pub(crate) enum Popped<J> {
    Run(Entry<J>, u64),
    Shed(Entry<J>, u64, ShedReason),
    Empty,
}

#[derive(Debug)]
pub(crate) struct JobQueue<J> {
    entries: VecDeque<Entry<J>>,
    capacity: usize,
    /// The queue timeout, in nanoseconds.
    timeout: Option<u64>,
    codel: Option<Codel>,
    clock: Clock,
}

impl<J> JobQueue<J> {
    pub(crate) fn new(
        capacity: usize,
        timeout: Option<Duration>,
        codel: Option<Codel>,
        clock: Clock,
    ) -> Self {
        JobQueue {
            // Grow on demand: a queue of 100,000 must not cost memory while empty.
            entries: VecDeque::new(),
            capacity,
            timeout: timeout.map(|t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)),
            codel,
            clock,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn has_room(&self) -> bool {
        self.entries.len() < self.capacity
    }

    /// Adds a job; the caller checked `has_room`.
    pub(crate) fn push(&mut self, entry: Entry<J>) {
        self.entries.push_back(entry);
    }

    /// Puts a job back at the head (it was popped but could not start).
    pub(crate) fn push_front(&mut self, entry: Entry<J>) {
        self.entries.push_front(entry);
    }

    /// Takes the oldest job, or sheds it if it must not run any more.
    pub(crate) fn pop(&mut self, now: Stamp) -> Popped<J> {
        let Some(entry) = self.entries.pop_front() else {
            return Popped::Empty;
        };
        let sojourn = now.nanos_since(entry.enqueued);
        if entry.deadline.is_some_and(|d| now >= d) {
            return Popped::Shed(entry, sojourn, ShedReason::Deadline);
        }
        if self.timeout.is_some_and(|t| sojourn > t) {
            return Popped::Shed(entry, sojourn, ShedReason::QueueTimeout);
        }
        if let Some(codel) = &mut self.codel {
            let (at, waited) = (self.clock.instant(now), Duration::from_nanos(sojourn));
            if codel.should_shed(at, waited, self.entries.is_empty()) {
                return Popped::Shed(entry, sojourn, ShedReason::QueueDelay);
            }
        }
        Popped::Run(entry, sojourn)
    }

    /// The next job that may start now, with a slot for it: the caller's own when `held`
    /// is `true` (a slot passed on from a finished job; `held` is cleared once it is used),
    /// else one taken from `limiter`. `None` when the queue is empty or no slot is free.
    /// Jobs that must be shed on the way are counted in `acct` and handed to `on_shed`,
    /// which ends them once the pool's lock is released. Both pools call this under their
    /// lock, so the check for a free slot and the taking of it cannot race.
    pub(crate) fn next_runnable(
        &mut self,
        now: Stamp,
        limiter: &Limiter,
        held: &mut bool,
        acct: &mut Accounting,
        mut on_shed: impl FnMut(Entry<J>, ShedReason),
    ) -> Option<Entry<J>> {
        while !self.is_empty() && (*held || limiter.in_flight() < limiter.limit()) {
            match self.pop(now) {
                Popped::Run(entry, sojourn) => {
                    if *held {
                        *held = false;
                    } else if !limiter.try_acquire_raw() {
                        // Only the pool takes its limiter's slots, under its lock: unreachable
                        // in practice, but never lose the job.
                        self.push_front(entry);
                        return None;
                    }
                    acct.latencies.record_queue_wait(sojourn);
                    return Some(entry);
                }
                Popped::Shed(entry, sojourn, reason) => {
                    acct.latencies.record_queue_wait(sojourn);
                    acct.finish(Outcome::Shed, None);
                    on_shed(entry, reason);
                }
                Popped::Empty => return None,
            }
        }
        None
    }

    /// Removes the first job that matches (an aborted one).
    pub(crate) fn remove(&mut self, mut matches: impl FnMut(&J) -> bool) -> Option<Entry<J>> {
        let index = self.entries.iter().position(|e| matches(&e.job))?;
        self.entries.remove(index)
    }

    /// Takes every waiting job (shutdown deadline).
    pub(crate) fn drain(&mut self) -> VecDeque<Entry<J>> {
        std::mem::take(&mut self.entries)
    }
}
