//! Closing and draining: when the pool counts as drained (every accepted closure ended,
//! and its outcome handed to its handle), waiting for that, the deadline that cancels what
//! is still queued, and the report every shutdown call gets.

use tokio::time::Instant;

use super::{Inner, State};
use crate::accounting::Outcome;
use crate::error::TaskError;
use crate::stats::ShutdownReport;

impl Inner {
    /// `n` closures, counted as ended under the lock earlier, are now published: wake a
    /// shutdown waiting for the drain. The lock is taken only while a shutdown is under way.
    pub(crate) fn publish_ended(&self, n: u64) {
        if n == 0 {
            return;
        }
        if self.published.add(n) {
            let st = self.state();
            self.notify_watchers(&st);
        }
    }

    /// Every accepted closure ended and was published (the caller closed the pool).
    fn drained(&self, st: &State) -> bool {
        st.running == 0 && st.queue.is_empty() && self.published.count() == st.acct.ended()
    }

    pub(crate) fn close(&self) {
        let idle = {
            let mut st = self.state();
            if !st.closed {
                st.closed = true;
                st.acct.shutting_down = true;
                self.published.close();
            }
            let idle = std::mem::take(&mut st.idle);
            st.workers -= idle.len();
            idle
        };
        for parker in idle {
            parker.exit();
        }
        self.changed.notify_all();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// Blocks until drained, or until `until`; `true` when drained.
    pub(crate) fn wait_drained(&self, until: Option<Instant>) -> bool {
        let mut st = self.state();
        loop {
            if self.drained(&st) {
                return true;
            }
            match until {
                None => st = self.watch(st, None),
                Some(until) => {
                    let now = Instant::now();
                    if now >= until {
                        return false;
                    }
                    st = self.watch(st, Some(until - now));
                }
            }
        }
    }

    /// The grace deadline passed: cancel what still waits in the queue. Running closures
    /// cannot be interrupted; they finish in the background.
    ///
    /// Returns `true` if closures still run. A pool whose closures all ended, but whose last
    /// outcomes are still being handed to their handles, did not time out: that is a few
    /// instructions of the pool's own, which the caller just waits for.
    pub(crate) fn cancel_queued(&self) -> bool {
        let (queued, running) = {
            let mut st = self.state();
            if st.running > 0 || !st.queue.is_empty() {
                st.acct.deadline_passed = true;
            }
            let queued = st.queue.drain();
            for _ in &queued {
                st.acct.finish(Outcome::Cancelled, None);
                st.acct.cancelled_at_deadline += 1;
            }
            (queued, st.running > 0)
        };
        let count = queued.len() as u64;
        for entry in queued {
            entry.job.finish_unrun(TaskError::cancelled());
        }
        self.publish_ended(count);
        self.changed.notify_all();
        running
    }

    /// The shutdown report; the same for every caller once the pool has drained.
    pub(crate) fn report(&self) -> ShutdownReport {
        self.state().acct.report()
    }
}
