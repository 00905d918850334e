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
    /// `None` with `--no-batch`. Each order carries its claim; the output is `None` for an
    /// order whose request gave up before its flush began (not written).
    batcher: Option<Batcher<Queued, Option<i64>>>,
    /// How long one order may wait for its commit; shorter than the request timeout, so the
    /// route's own 504 (which knows whether the write began) wins over the outer one.
    deadline: Duration,
    committed: AtomicU64,
    timed_out: AtomicU64,
    /// Batched orders skipped by their flush: their request had given up. (The batcher's
    /// own counters count them as committed: their flush succeeded without them.)
    abandoned: Arc<AtomicU64>,
}

/// An order in the batcher's queue, with the claim that decides whether it is written.
type Queued = (NewOrder, Arc<Claim>);

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
        let abandoned = Arc::new(AtomicU64::new(0));
        let batcher = if cfg.batch {
            let flush_storage = storage.clone();
            let skipped = abandoned.clone();
            // One flush is one transaction for the whole batch. A failed flush fails its
            // items (the default policy) and is never retried: a flush that timed out may
            // still commit, and a retry would write its orders twice.
            let builder = Batcher::builder(move |queued: Vec<Queued>| {
                flush_claimed(flush_storage.clone(), queued, skipped.clone())
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
            abandoned,
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
        batcher: &Batcher<Queued, Option<i64>>,
        order: NewOrder,
        deadline: Instant,
    ) -> Result<i64, AppError> {
        // Dropped before its flush begins (client gone, drain bound, the outer timeout), the
        // order is skipped by the flush: a dropped receipt alone would not withdraw it.
        let claim = Arc::new(Claim::default());
        let _guard = AbandonOnDrop(claim.clone());
        let receipt = match batcher.try_submit((order, claim.clone())) {
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
            Ok(Ok(Some(id))) => Ok(id),
            // Skipped by its flush: only an abandoned claim is, and nothing was written.
            Ok(Ok(None)) => Err(AppError::Timeout {
                outcome_unknown: false,
            }),
            Ok(Err(err)) => Err(batch_error(&err)),
            // Past the deadline: still queued, the order is abandoned and never written; in
            // a flush, only the database knows.
            Err(_elapsed) => Err(AppError::Timeout {
                outcome_unknown: !claim.abandon(),
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
            "abandoned": self.abandoned.load(Ordering::Relaxed),
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
        let a = self.abandoned.load(Ordering::Relaxed);
        let _ = writeln!(out, "orders_abandoned_total {a}");
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

/// One flush: starts the claim of each queued order, writes the orders whose claim it won in
/// one transaction, and answers `None` for the others (their request gave up first: nothing
/// is written). The claims are started before the transaction begins, so an order whose
/// request gives up from then on is answered "outcome unknown".
async fn flush_claimed(
    storage: Arc<dyn Storage>,
    queued: Vec<Queued>,
    abandoned: Arc<AtomicU64>,
) -> Result<Vec<Option<i64>>, StoreError> {
    let mut started = Vec::with_capacity(queued.len());
    let mut orders = Vec::with_capacity(queued.len());
    for (order, claim) in queued {
        let start = claim.start();
        started.push(start);
        if start {
            orders.push(order);
        }
    }
    let skipped = started.len() - orders.len();
    if skipped > 0 {
        abandoned.fetch_add(skipped as u64, Ordering::Relaxed);
    }
    let ids = if orders.is_empty() {
        Vec::new()
    } else {
        let n = orders.len();
        let ids = storage.insert_orders(orders, None).await?;
        if ids.len() != n {
            return Err(StoreError::Database(format!(
                "{n} orders inserted, {} ids returned",
                ids.len()
            )));
        }
        ids
    };
    let mut ids = ids.into_iter();
    Ok(started
        .into_iter()
        .map(|w| if w { ids.next() } else { None })
        .collect())
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    use tokio::sync::Semaphore;

    use super::*;
    use crate::storage::{StoreFuture, User};

    /// A database whose writes wait at a gate, so a test can hold a flush open.
    struct Gated {
        entered: Arc<AtomicUsize>,
        gate: Arc<Semaphore>,
        written: Arc<Mutex<Vec<String>>>,
    }

    impl Storage for Gated {
        fn get_user(&self, _id: i64) -> StoreFuture<Option<User>> {
            Box::pin(async { Ok(None) })
        }
        fn insert_orders(
            &self,
            orders: Vec<NewOrder>,
            _claim: Option<Arc<Claim>>,
        ) -> StoreFuture<Vec<i64>> {
            let (entered, gate, written) = (
                self.entered.clone(),
                self.gate.clone(),
                self.written.clone(),
            );
            Box::pin(async move {
                entered.fetch_add(1, Ordering::SeqCst);
                gate.acquire().await.expect("gate open").forget();
                let mut w = written.lock().unwrap();
                Ok(orders
                    .into_iter()
                    .map(|o| {
                        w.push(o.item);
                        w.len() as i64
                    })
                    .collect())
            })
        }
        fn confirm(&self, _order_id: i64) -> StoreFuture<()> {
            Box::pin(async { Ok(()) })
        }
        fn max_writers(&self) -> Option<usize> {
            Some(1)
        }
        fn snapshot(&self) -> serde_json::Value {
            serde_json::json!({})
        }
        fn metrics(&self, _out: &mut String) {}
        fn shutdown(&self, _grace: Duration) {}
    }

    fn order(item: &str) -> NewOrder {
        NewOrder {
            user_id: 1,
            item: item.to_owned(),
            quantity: 1,
        }
    }

    /// A writer of batches of one order, one flush at a time, and its database.
    fn writer(deadline: Duration) -> (Arc<OrderWriter>, Arc<Gated>) {
        let db = Arc::new(Gated {
            entered: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
            written: Arc::default(),
        });
        let cfg = WriterConfig {
            batch: true,
            deadline,
            max_batch: 1,
            queue_capacity: 16,
        };
        (Arc::new(OrderWriter::new(db.clone(), cfg).unwrap()), db)
    }

    /// Waits (bounded) until `done` holds, letting the spawned tasks run.
    async fn until(what: &str, done: impl Fn() -> bool) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
    }

    fn queued(w: &OrderWriter) -> usize {
        w.batcher.as_ref().unwrap().snapshot().queued as usize
    }

    #[tokio::test]
    async fn a_batched_order_whose_request_gave_up_before_its_flush_is_not_written() {
        let (w, db) = writer(Duration::from_secs(60));
        let a = tokio::spawn({
            let w = w.clone();
            async move { w.write(order("a"), Instant::now()).await }
        });
        until("a's flush began", || db.entered.load(Ordering::SeqCst) == 1).await;
        let b = tokio::spawn({
            let w = w.clone();
            async move { w.write(order("b"), Instant::now()).await }
        });
        until("b is queued", || queued(&w) == 1).await;
        // The client of `b` leaves (or the drain bound cuts it): its request future drops.
        b.abort();
        assert!(b.await.unwrap_err().is_cancelled());

        db.gate.add_permits(16);
        assert_eq!(a.await.unwrap().ok(), Some(1));
        until("b's flush skipped it", || {
            w.abandoned.load(Ordering::Relaxed) == 1
        })
        .await;
        let c = w.write(order("c"), Instant::now()).await;
        assert_eq!(c.ok(), Some(2), "the batcher goes on after a skipped order");
        assert_eq!(*db.written.lock().unwrap(), ["a", "c"]);
    }

    #[tokio::test]
    async fn a_batched_order_past_its_deadline_while_queued_says_nothing_was_written() {
        let deadline = Duration::from_secs(10);
        let (w, db) = writer(deadline);
        let a = tokio::spawn({
            let w = w.clone();
            async move { w.write(order("a"), Instant::now()).await }
        });
        until("a's flush began", || db.entered.load(Ordering::SeqCst) == 1).await;
        // Arrived long ago: its deadline passes in 50 ms, while `a`'s flush holds the only
        // writer, and before the batcher's queue timeout (half the deadline from submit).
        let arrival = Instant::now() - (deadline - Duration::from_millis(50));
        let b = w.write(order("b"), arrival).await;
        assert!(
            matches!(
                b,
                Err(AppError::Timeout {
                    outcome_unknown: false
                })
            ),
            "{b:?}"
        );
        db.gate.add_permits(16);
        assert_eq!(a.await.unwrap().ok(), Some(1));
        until("b's flush skipped it", || {
            w.abandoned.load(Ordering::Relaxed) == 1
        })
        .await;
        assert_eq!(*db.written.lock().unwrap(), ["a"]);
    }
}
