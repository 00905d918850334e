//! How `POST /api/orders` reaches the database: through the batcher (group commit, the
//! default) or, with `--no-batch`, one transaction per order. Either way the answer is 201
//! only after the commit, and a 504 says whether anything may have been written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use surgepool::batch::{BatchError, Batcher};
use surgepool::{Limit, SubmitError};
use tokio::time::Instant;

use crate::error::AppError;
use crate::storage::{Claim, NewOrder, Storage, StoreError};

/// The order writer.
#[derive(Debug)]
pub(crate) struct OrderWriter {
    storage: Arc<dyn Storage>,
    /// `None` with `--no-batch`.
    batcher: Option<Batcher<NewOrder, i64>>,
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

/// How the writer is set up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterConfig {
    pub(crate) batch: bool,
    pub(crate) deadline: Duration,
    pub(crate) max_batch: usize,
    pub(crate) queue_capacity: usize,
}

impl OrderWriter {
    pub(crate) fn new(storage: Arc<dyn Storage>, cfg: WriterConfig) -> anyhow::Result<OrderWriter> {
        let batcher = if cfg.batch {
            let flush_storage = storage.clone();
            // One flush is one transaction for the whole batch. A failed flush fails its
            // items (the default policy) and is never retried: a flush that timed out may
            // still commit, and a retry would write its orders twice.
            let builder = Batcher::builder(move |orders: Vec<NewOrder>| {
                flush_storage.insert_orders(orders, None)
            })
            .max_batch_size(cfg.max_batch)
            .queue_capacity(cfg.queue_capacity)
            // An order still queued at half its deadline is shed, never written: its 504
            // can then say so.
            .queue_timeout(cfg.deadline / 2);
            let limit = match storage.max_writers() {
                Some(n) => Limit::fixed(n),
                None => Limit::adaptive(),
            };
            Some(builder.limit(limit).build()?)
        } else {
            None
        };
        Ok(OrderWriter {
            storage,
            batcher,
            deadline: cfg.deadline,
            committed: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
        })
    }

    /// Writes one order that arrived at `arrival` and returns its id once committed.
    pub(crate) async fn write(&self, order: NewOrder, arrival: Instant) -> Result<i64, AppError> {
        let deadline = arrival + self.deadline;
        let result = if Instant::now() >= deadline {
            // The admission queue ate the whole budget: nothing was written.
            Err(AppError::Timeout {
                outcome_unknown: false,
            })
        } else {
            match &self.batcher {
                Some(batcher) => self.write_batched(batcher, order, deadline).await,
                None => self.write_direct(order, deadline).await,
            }
        };
        match &result {
            Ok(_) => self.committed.fetch_add(1, Ordering::Relaxed),
            Err(AppError::Timeout { .. }) => self.timed_out.fetch_add(1, Ordering::Relaxed),
            Err(_) => 0,
        };
        result
    }

    async fn write_batched(
        &self,
        batcher: &Batcher<NewOrder, i64>,
        order: NewOrder,
        deadline: Instant,
    ) -> Result<i64, AppError> {
        let receipt = match batcher.try_submit(order) {
            Ok(receipt) => receipt,
            Err(SubmitError::Full(_)) => {
                return Err(AppError::Unavailable {
                    reason: "too many orders waiting for a commit",
                    retry_after_s: 1,
                })
            }
            Err(_) => {
                return Err(AppError::Unavailable {
                    reason: "shutting down",
                    retry_after_s: 1,
                })
            }
        };
        match tokio::time::timeout_at(deadline, receipt).await {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(err)) => Err(batch_error(&err)),
            // Past the deadline the order is in a flush (or about to be shed): only the
            // database knows.
            Err(_elapsed) => Err(AppError::Timeout {
                outcome_unknown: true,
            }),
        }
    }

    async fn write_direct(&self, order: NewOrder, deadline: Instant) -> Result<i64, AppError> {
        let claim = Arc::new(Claim::default());
        let _guard = AbandonOnDrop(claim.clone());
        let write = self.storage.insert_orders(vec![order], Some(claim.clone()));
        let result = match tokio::time::timeout_at(deadline, write).await {
            Ok(result) => result,
            Err(_elapsed) => Err(StoreError::Timeout),
        };
        match result {
            Ok(ids) => ids
                .first()
                .copied()
                .ok_or_else(|| AppError::Internal("insert returned no id".into())),
            Err(StoreError::Unavailable) => Err(AppError::Unavailable {
                reason: "the database is busy",
                retry_after_s: 1,
            }),
            Err(StoreError::Timeout | StoreError::Abandoned) => Err(AppError::Timeout {
                outcome_unknown: !claim.abandon(),
            }),
            Err(StoreError::Database(why)) => Err(AppError::Internal(why)),
        }
    }

    pub(crate) fn snapshot(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "mode": if self.batcher.is_some() { "batch" } else { "direct" },
            "committed": self.committed.load(Ordering::Relaxed),
            "timed_out": self.timed_out.load(Ordering::Relaxed),
        });
        if let Some(b) = &self.batcher {
            let s = b.snapshot();
            v["batcher"] = serde_json::json!({
                "submitted": s.submitted, "rejected": s.rejected, "accepted": s.accepted,
                "committed": s.committed, "failed": s.failed, "shed": s.shed,
                "cancelled": s.cancelled, "queued": s.queued, "in_flush": s.in_flush,
                "flushes": s.flushes, "failed_flushes": s.failed_flushes,
                "flushes_running": s.flushes_running, "limit": s.limit,
                "batch_size_mean": s.batch_size.mean, "batch_size_max": s.batch_size.max,
                "flush_latency_mean_ms": s.flush_latency.mean.as_secs_f64() * 1e3,
                "item_latency_mean_ms": s.item_latency.mean.as_secs_f64() * 1e3,
            });
        }
        v
    }

    pub(crate) fn metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let c = self.committed.load(Ordering::Relaxed);
        let t = self.timed_out.load(Ordering::Relaxed);
        let _ = writeln!(out, "orders_committed_total {c}");
        let _ = writeln!(out, "orders_commit_timeouts_total {t}");
        if let Some(b) = &self.batcher {
            let s = b.snapshot();
            for (name, v) in [
                ("submitted", s.submitted),
                ("rejected", s.rejected),
                ("accepted", s.accepted),
                ("committed", s.committed),
                ("failed", s.failed),
                ("shed", s.shed),
                ("cancelled", s.cancelled),
                ("flushes", s.flushes),
                ("failed_flushes", s.failed_flushes),
            ] {
                let _ = writeln!(out, "orders_batcher_{name}_total {v}");
            }
            for (name, v) in [
                ("queued", s.queued),
                ("in_flush", s.in_flush),
                ("flushes_running", s.flushes_running),
                ("limit", s.limit),
            ] {
                let _ = writeln!(out, "orders_batcher_{name} {v}");
            }
            let _ = writeln!(out, "orders_batcher_batch_size_mean {}", s.batch_size.mean);
            let _ = writeln!(out, "orders_batcher_batch_size_max {}", s.batch_size.max);
        }
    }

    /// Flushes every order still queued, within `grace`.
    pub(crate) async fn shutdown(&self, grace: Duration) {
        if let Some(b) = &self.batcher {
            let report = b.shutdown_timeout(grace).await;
            if report.timed_out {
                eprintln!(
                    "orders: batcher shutdown: {} orders cancelled",
                    report.cancelled
                );
            }
        }
    }
}

/// A failed receipt, as an answer. A flush that failed with a timeout may still commit in the
/// database; any other failure rolled back.
fn batch_error(err: &BatchError) -> AppError {
    if err.is_shed() {
        return AppError::Timeout {
            outcome_unknown: false,
        };
    }
    if err.is_cancelled() {
        return AppError::Timeout {
            outcome_unknown: true,
        };
    }
    match err
        .flush_error()
        .and_then(|e| e.downcast_ref::<StoreError>())
    {
        Some(StoreError::Timeout) => AppError::Timeout {
            outcome_unknown: true,
        },
        Some(StoreError::Unavailable | StoreError::Abandoned) => AppError::Unavailable {
            reason: "the database is busy",
            retry_after_s: 1,
        },
        _ => AppError::Internal(err.to_string()),
    }
}
