//! Closing and draining: when the pool counts as drained (every accepted task ended, and
//! its outcome handed to its handle), the deadline that cancels what is left, and the
//! report every shutdown call gets.

use super::{Deferred, Inner, State};
use crate::accounting::Outcome;
use crate::error::TaskError;
use crate::stats::ShutdownReport;
use crate::sync::{Arc, Ordering};

impl Inner {
    pub(super) fn notify_if_drained(&self, st: &State) {
        if self.drained(st) {
            self.drained.notify_waiters();
        }
    }

    /// Closed, and every accepted task ended and published (see the invariants).
    pub(super) fn drained(&self, st: &State) -> bool {
        st.closed
            && st.running == 0
            && st.queue.is_empty()
            && self.published.count() == st.acct.ended()
    }

    pub(crate) fn close(self: &Arc<Self>) {
        let mut deferred = Deferred::default();
        let idle = {
            let mut st = self.state();
            self.mark_closed(&mut st);
            // Idle workers will get no more work: let them go.
            let idle = std::mem::take(&mut st.idle);
            for parker in &idle {
                self.remove_worker(&mut st, parker);
            }
            self.wake_next_waiter(&mut st, &mut deferred);
            self.notify_if_drained(&st);
            idle
        };
        for parker in idle {
            parker.exit();
        }
        self.carry_out(deferred);
    }

    pub(crate) fn snapshot_closed(&self) -> bool {
        self.state().closed
    }

    pub(crate) fn is_drained(&self) -> bool {
        self.drained(&self.state())
    }

    pub(crate) async fn wait_drained(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_drained() {
                return;
            }
            notified.await;
        }
    }

    /// The shutdown deadline passed: cancel every queued task and every running one.
    pub(crate) fn cancel_all(self: &Arc<Self>) {
        let queued = {
            let mut st = self.state();
            // Tasks that all ended, their outcomes still on the way to their handles, did not
            // time out: handing them over is a few instructions of the pool's own.
            if st.running > 0 || !st.queue.is_empty() {
                st.acct.deadline_passed = true;
            }
            let queued = st.queue.drain();
            for entry in &queued {
                st.bytes_in_flight -= entry.weight;
                st.acct.finish(Outcome::Cancelled, None);
                st.acct.cancelled_at_deadline += 1;
            }
            self.cancel_running.store(true, Ordering::Release);
            self.notify_if_drained(&st);
            queued
        };
        let count = queued.len() as u64;
        for entry in queued {
            entry.job.finish_unrun(TaskError::cancelled());
        }
        self.publish_ended(count);
        self.wake_workers();
    }

    /// The shutdown report: the same for every caller once the pool has drained.
    pub(crate) fn report(&self) -> ShutdownReport {
        self.state().acct.report()
    }
}
