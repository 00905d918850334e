//! `shutdown` and `shutdown_timeout`: close, drain, and cancel what outlives the grace.

use std::time::Duration;

use tokio::time::Instant;

use super::Pool;
use crate::stats::ShutdownReport;

impl Pool {
    /// Closes the pool, then waits until every accepted task has finished.
    ///
    /// When it returns, every task's handle has its result ([`TaskHandle::is_finished`](super::TaskHandle::is_finished)),
    /// and the pool has dropped every task's future and every output that no handle will
    /// take.
    ///
    /// Idempotent: concurrent and later callers all return once the pool is drained, and
    /// all get the same report. A grace deadline that passed (in any caller's
    /// [`shutdown_timeout`](Pool::shutdown_timeout)) before the drain ended is part of it:
    /// `timed_out` is then `true` for every caller, this one included.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future stops the waiting, not the shutdown (the pool
    /// stays closed and keeps draining).
    ///
    /// See the [example on `Pool`](Pool#examples).
    pub async fn shutdown(&self) -> ShutdownReport {
        let inner = self.inner();
        crate::trace::event!(info, pool = %self.name(), "shutdown began");
        inner.close();
        inner.wait_drained().await;
        let report = inner.report();
        crate::trace::event!(info, pool = %self.name(), drained = report.drained, cancelled = report.cancelled, timed_out = report.timed_out, "shutdown ended");
        report
    }

    /// As [`shutdown`](Pool::shutdown), but whatever has not finished after `grace` is
    /// cancelled: queued tasks at once, running tasks at their next poll. The report
    /// counts them and sets `timed_out`.
    ///
    /// A task that blocks its thread without reaching an `.await` cannot be cancelled
    /// until it does; this call waits for it.
    ///
    /// It returns once the pool is drained, with the report every shutdown call gets (see
    /// [`shutdown`](Pool::shutdown)): `timed_out` says whether some grace deadline, this
    /// one or a concurrent caller's, passed before the drain ended. A `grace` too long to
    /// represent (`Duration::MAX`) never runs out.
    ///
    /// See the [example on `ShutdownReport`](ShutdownReport#examples).
    pub async fn shutdown_timeout(&self, grace: Duration) -> ShutdownReport {
        let inner = self.inner();
        crate::trace::event!(info, pool = %self.name(), grace = ?grace, "shutdown began");
        inner.close();
        let deadline = Instant::now().checked_add(grace);
        let in_time = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, inner.wait_drained())
                .await
                .is_ok(),
            None => {
                inner.wait_drained().await;
                true
            }
        };
        if !in_time {
            inner.cancel_all();
            inner.wait_drained().await;
        }
        let report = inner.report();
        crate::trace::event!(info, pool = %self.name(), drained = report.drained, cancelled = report.cancelled, timed_out = report.timed_out, "shutdown ended");
        report
    }
}
