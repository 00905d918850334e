//! Closing the batcher, waiting for its drain, and shutdown's deadline (cancel everything).

use super::Inner;
use crate::batch::error::BatchError;
use crate::sync::{lock, Arc};

impl<T: Send + 'static, R: Send + 'static> Inner<T, R> {
    /// Stops accepting; lingering items are flushed at once.
    pub(crate) fn close(self: &Arc<Self>) {
        {
            let mut st = lock(&self.state);
            st.closed = true;
            self.notify_if_idle(&mut st);
        }
        self.room.notify_waiters();
        self.pump();
    }

    /// `(finished, cancelled)` so far: items that ended by any outcome but cancellation, and
    /// cancelled ones. Shutdown reports the difference.
    pub(crate) fn ended(&self) -> (u64, u64) {
        let st = lock(&self.state);
        (st.committed + st.failed + st.shed, st.cancelled)
    }

    /// Waits until nothing is queued or in a flush; `false` when `deadline` came first.
    pub(crate) async fn drained(&self, deadline: Option<tokio::time::Instant>) -> bool {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            {
                let st = lock(&self.state);
                if st.queue.is_empty() && st.in_flush == 0 {
                    return true;
                }
            }
            match deadline {
                None => idle.await,
                Some(at) => {
                    if tokio::time::timeout_at(at, idle).await.is_err() {
                        return false;
                    }
                }
            }
        }
    }

    /// Shutdown's deadline: every queued item and every item still in a flush is cancelled
    /// and counted, and the running flushes are aborted.
    pub(crate) fn cancel_all(&self) {
        let (queued, waiters, aborts) = {
            let mut st = lock(&self.state);
            let queued: Vec<_> = st.queue.drain(..).collect();
            st.cancelled += queued.len() as u64;
            let running: Vec<_> = st.running.drain().map(|(_, r)| r).collect();
            let mut waiters = Vec::new();
            let mut aborts = Vec::new();
            for r in running {
                waiters.extend(self.cancel_waiters(&mut st, r.waiters));
                aborts.extend(r.abort);
            }
            self.notify_if_idle(&mut st);
            (queued, waiters, aborts)
        };
        for abort in aborts {
            abort.abort();
        }
        self.send_errors(queued, BatchError::cancelled);
        for tx in waiters {
            let _ = tx.send(Err(BatchError::cancelled()));
        }
    }
}
