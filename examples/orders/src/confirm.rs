//! Order confirmations (`--redis-url`): after an order commits, its confirmation job (the
//! order id, in ASCII decimal) goes through `surgepool_redis::Overflow`. It runs in a small
//! local pool while that has room; otherwise it is XADDed to the stream, where
//! `orders worker` ([`crate::worker`]) picks it up. Both paths run the same [`handler`]: one
//! `confirmations` row per order, keyed by its id, so a redelivered job changes nothing.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use surgepool::{Limit, Pool};
use surgepool_redis::{Handler, Job, Overflow, Queue, Routed};
use tokio::sync::Notify;

use crate::config::RedisConfig;
use crate::storage::Storage;

/// The handler both paths run: parse the order id, record the confirmation.
pub(crate) fn handler(storage: Arc<dyn Storage>) -> impl Handler {
    move |job: Job| {
        let storage = storage.clone();
        async move {
            let id = std::str::from_utf8(job.payload())
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| format!("job {}: the payload is not an order id", job.id()))?;
            storage.confirm(id).await.map_err(|e| e.to_string())
        }
    }
}

/// The producer side, held by the service.
#[derive(Debug)]
pub(crate) struct Confirmations {
    /// `None` with `--confirm-local 0`: every job goes straight to the stream.
    overflow: Option<Overflow>,
    queue: Queue,
    /// Sends (and local runs) not finished yet: shutdown waits for them.
    pending: AtomicUsize,
    idle: Notify,
    local_failed: AtomicU64,
    lost: AtomicU64,
}

impl Confirmations {
    /// Connects to Redis (bounded by the queue's operation timeout) and builds the local pool.
    pub(crate) async fn connect(
        cfg: &RedisConfig,
        storage: Arc<dyn Storage>,
    ) -> anyhow::Result<Arc<Confirmations>> {
        let queue = Queue::connect(&cfg.url, &cfg.stream)
            .await
            .map_err(|e| anyhow::anyhow!("--redis-url {}: {e}", cfg.url))?;
        let overflow = match cfg.local {
            0 => None,
            n => {
                // No queue: a job that cannot start now goes to the stream at once.
                let pool = Pool::builder()
                    .limit(Limit::fixed(n))
                    .queue_capacity(0)
                    .build()?;
                Some(Overflow::new(pool, queue.clone(), handler(storage)))
            }
        };
        Ok(Arc::new(Confirmations {
            overflow,
            queue,
            pending: AtomicUsize::new(0),
            idle: Notify::new(),
            local_failed: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        }))
    }

    /// Sends `order_id`'s confirmation, waiting at most `budget` for it to be in Redis or
    /// started locally. The send runs in its own task, so a request that gives up (its
    /// deadline) never cancels it half-way; past `budget` it goes on in the background and
    /// shutdown waits for it.
    pub(crate) async fn send(self: &Arc<Self>, order_id: i64, budget: Duration) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        let this = self.clone();
        let task = tokio::spawn(async move {
            this.route(Bytes::from(order_id.to_string())).await;
            if this.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                this.idle.notify_waiters();
            }
        });
        let _ = tokio::time::timeout(budget, task).await;
    }

    async fn route(&self, payload: Bytes) {
        let Some(overflow) = &self.overflow else {
            self.push(payload).await;
            return;
        };
        match overflow.submit(payload.clone()).await {
            Ok(Routed::Local(handle)) => {
                // A local run is not retried by the pool: a failure goes to the stream, where
                // the consumers retry it with backoff.
                let failed = match handle.await {
                    Ok(Ok(())) => false,
                    Ok(Err(e)) => {
                        tracing::warn!("confirmation {payload:?} failed locally: {e}");
                        true
                    }
                    Err(e) => {
                        tracing::warn!("confirmation {payload:?} failed locally: {e}");
                        true
                    }
                };
                if failed {
                    self.local_failed.fetch_add(1, Ordering::Relaxed);
                    self.push(payload).await;
                }
            }
            Ok(Routed::Queued(_)) => {}
            Err(e) => {
                self.lost.fetch_add(1, Ordering::Relaxed);
                tracing::error!("confirmation of order {payload:?} not sent: {e}");
            }
        }
    }

    async fn push(&self, payload: Bytes) {
        if let Err(e) = self.queue.push(payload.clone()).await {
            self.lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!("confirmation of order {payload:?} not sent: {e}");
        }
    }

    /// Waits (at most `grace`) for the sends and local runs in progress, then stops the pool.
    pub(crate) async fn shutdown(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let idle = self.idle.notified();
            if self.pending.load(Ordering::Acquire) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                tracing::warn!(
                    "{} confirmation(s) still being sent at shutdown",
                    self.pending.load(Ordering::Acquire)
                );
                break;
            }
        }
        if let Some(overflow) = &self.overflow {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            overflow.pool().shutdown_timeout(left).await;
        }
    }

    /// Prometheus lines.
    pub(crate) fn metrics(&self, out: &mut String) {
        let s = self
            .overflow
            .as_ref()
            .map(Overflow::stats)
            .unwrap_or_default();
        for (name, v) in [
            ("local", s.local),
            // Pushed to the stream by either path (an overflow, or a local failure handed on).
            ("queued", self.queue.pushed()),
            ("full", s.full),
            ("unavailable", s.unavailable),
            ("local_failed", self.local_failed.load(Ordering::Relaxed)),
            ("lost", self.lost.load(Ordering::Relaxed)),
        ] {
            let _ = writeln!(out, "orders_confirmations_{name}_total {v}");
        }
        if let Some(o) = &self.overflow {
            crate::storage::pool_metrics(out, "confirmations", &o.pool().snapshot());
        }
    }
}
