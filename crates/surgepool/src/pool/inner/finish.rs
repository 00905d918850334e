//! A task's end: a worker finishing one (its slot going straight to the next queued task,
//! its outcome to the limiter once the lock is released), and an abort (a queued task
//! removed and ended, a running one flagged for its worker to drop).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use tokio::time::Instant;

use super::{AfterRun, Deferred, Inner, Running};
use crate::accounting::Outcome;
use crate::error::TaskError;
use crate::limit::Outcome as LimitOutcome;
use crate::pool::task::SharedTask;
use crate::pool::worker::Parker;
use crate::sync::{Arc, Ordering};

impl Inner {
    /// Called by a worker when its task ended; decides what the worker does next.
    pub(crate) fn finish(
        self: &Arc<Self>,
        parker: &Arc<Parker>,
        done: &Running,
        outcome: Outcome,
    ) -> AfterRun {
        let at = Instant::now();
        let now = self.settings.clock.at(at);
        let run_time = now.nanos_since(done.started);
        let queue_wait = done.started.nanos_since(done.accepted);
        let limit_outcome = match outcome {
            Outcome::Completed => LimitOutcome::Success(Duration::from_nanos(run_time)),
            Outcome::Panicked | Outcome::Cancelled | Outcome::Shed => LimitOutcome::Ignored,
        };
        let mut deferred = Deferred::default();
        let in_flight;
        let after = {
            let mut st = self.state();
            // The caller publishes the task once this returns (`publish_ended`).
            st.running -= 1;
            st.bytes_in_flight -= done.weight;
            st.acct.finish(outcome, Some((queue_wait, run_time)));
            if outcome == Outcome::Cancelled && self.cancel_running.load(Ordering::Acquire) {
                st.acct.cancelled_at_deadline += 1;
            }
            // With tasks waiting, the slot goes straight to the next one (when the limit
            // still allows it) instead of being released and taken again. The outcome goes
            // to the limiter after the lock is released (an adaptive algorithm's update is
            // the longest step here), with the in-flight count the task saw.
            let held;
            (held, in_flight) = self.limiter.end_job_raw(!st.queue.is_empty());
            let mut next = None;
            self.start_queued(&mut st, now, &mut deferred, Some(&mut next), held);
            match next {
                Some(running) => AfterRun::Run(running),
                None => self.idle_or_exit(&mut st, parker),
            }
        };
        self.carry_out(deferred);
        // The task is counted and its slot settled: a panicking limit algorithm must not
        // undo that (the worker would count the task again), so it is caught, and the limit
        // just stays where it was.
        let grew = catch_unwind(AssertUnwindSafe(|| {
            self.limiter.sample_raw(limit_outcome, at, in_flight)
        }));
        if grew.unwrap_or(false) {
            // The limit grew: queued tasks may start now rather than at the next finish.
            self.start_more();
        }
        after
    }

    /// Starts queued tasks on free slots (after the limit grew outside the lock).
    fn start_more(self: &Arc<Self>) {
        let now = self.settings.clock.now();
        let mut deferred = Deferred::default();
        {
            let mut st = self.state();
            self.start_queued(&mut st, now, &mut deferred, None, false);
        }
        self.carry_out(deferred);
    }

    pub(crate) fn abort(self: &Arc<Self>, task: SharedTask) {
        let removed = {
            let mut st = self.state();
            let removed = st.queue.remove(|j| j.is(&task));
            if let Some(entry) = &removed {
                st.bytes_in_flight -= entry.weight;
                st.acct.finish(Outcome::Cancelled, None);
                let mut deferred = Deferred::default();
                self.wake_next_waiter(&mut st, &mut deferred);
                self.notify_if_drained(&st);
                drop(st);
                self.carry_out(deferred);
            }
            removed
        };
        match removed {
            Some(entry) => {
                entry.job.finish_unrun(TaskError::cancelled());
                self.publish_ended(1);
            }
            None => {
                // Running (or about to run): its worker drops it at the next poll.
                task.set_aborted();
                self.wake_workers();
            }
        }
    }

    /// Wakes every worker (they re-check abort flags; idle ones just park again).
    pub(super) fn wake_workers(&self) {
        let parkers: Vec<Arc<Parker>> = self.state().all.clone();
        for parker in parkers {
            parker.wake_task();
        }
    }
}
