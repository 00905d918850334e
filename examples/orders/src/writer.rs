//! How `POST /api/orders` reaches the database: through the batcher (group commit, the
//! default) or, with `--no-batch`, one transaction per order. Either way the answer is 201
//! only after the commit, and a 504 says whether anything may have been written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::AppError;
use crate::storage::{Claim, NewOrder, Storage, StoreError};

/// The order writer.
#[derive(Debug)]
pub(crate) struct OrderWriter {
    storage: Arc<dyn Storage>,
    /// How long one order may wait for its commit; shorter than the request timeout, so the
    /// route's own 504 (which knows whether the write began) wins over the outer one.
    deadline: Duration,
    committed: AtomicU64,
    timed_out: AtomicU64,
}

impl std::fmt::Debug for dyn Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Storage")
    }
}

/// Abandons a claim whose request future is dropped (client gone, drain timeout): a write
/// that has not begun then never will.
struct AbandonOnDrop(Arc<Claim>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.abandon();
    }
}

impl OrderWriter {
    pub(crate) fn new(storage: Arc<dyn Storage>, deadline: Duration) -> OrderWriter {
        OrderWriter {
            storage,
            deadline,
            committed: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
        }
    }

    /// Writes one order that arrived at `arrival` and returns its id once committed.
    pub(crate) async fn write(
        &self,
        order: NewOrder,
        arrival: tokio::time::Instant,
    ) -> Result<i64, AppError> {
        let deadline = arrival + self.deadline;
        if tokio::time::Instant::now() >= deadline {
            self.timed_out.fetch_add(1, Ordering::Relaxed);
            return Err(AppError::Timeout {
                outcome_unknown: false,
            });
        }
        let claim = Arc::new(Claim::default());
        let _guard = AbandonOnDrop(claim.clone());
        let write = self.storage.insert_orders(vec![order], Some(claim.clone()));
        let result = match tokio::time::timeout_at(deadline, write).await {
            Ok(result) => result,
            Err(_elapsed) => Err(StoreError::Timeout),
        };
        match result {
            Ok(ids) => {
                self.committed.fetch_add(1, Ordering::Relaxed);
                ids.first()
                    .copied()
                    .ok_or_else(|| AppError::Internal("insert returned no id".into()))
            }
            Err(StoreError::Unavailable) => Err(AppError::Unavailable {
                reason: "the database is busy",
                retry_after_s: 1,
            }),
            Err(StoreError::Timeout | StoreError::Abandoned) => {
                self.timed_out.fetch_add(1, Ordering::Relaxed);
                Err(AppError::Timeout {
                    outcome_unknown: !claim.abandon(),
                })
            }
            Err(StoreError::Database(why)) => Err(AppError::Internal(why)),
        }
    }

    pub(crate) fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "mode": "direct",
            "committed": self.committed.load(Ordering::Relaxed),
            "timed_out": self.timed_out.load(Ordering::Relaxed),
        })
    }

    pub(crate) fn metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "orders_committed_total {}",
            self.committed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "orders_commit_timeouts_total {}",
            self.timed_out.load(Ordering::Relaxed)
        );
    }

    /// Flushes what is pending. The direct path holds nothing of its own.
    pub(crate) async fn shutdown(&self, _grace: Duration) {}
}
