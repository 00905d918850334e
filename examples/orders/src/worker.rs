//! `orders worker`: a `surgepool_redis::Consumer` on the confirmation stream. It fetches as
//! many jobs as its adaptive limit has free permits, records each confirmation in the
//! database (the same handler as the service's local path), acks only after the row is
//! committed, and on SIGINT/SIGTERM drains: stops fetching, lets running jobs finish within
//! `--drain-timeout`, and hands the rest back to the stream for another worker.

use std::time::Duration;

use surgepool_redis::{Consumer, Queue};

use crate::config::WorkerConfig;
use crate::{confirm, serve, storage};

/// How long the storage's pools get to finish after the drain.
const STORAGE_GRACE: Duration = Duration::from_secs(5);

pub(crate) fn run(cfg: WorkerConfig) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("orders-confirm")
        .build()?;
    rt.block_on(consume(cfg))?;
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

async fn consume(cfg: WorkerConfig) -> anyhow::Result<()> {
    let storage = storage::open(&cfg.database).await?;
    let queue = Queue::connect(&cfg.redis.url, &cfg.redis.stream)
        .await
        .map_err(|e| anyhow::anyhow!("--redis-url {}: {e}", cfg.redis.url))?;
    let consumer = Consumer::builder(queue, confirm::handler(storage.clone()))
        .max_deliveries(cfg.max_deliveries)
        .drain_grace(cfg.drain_timeout)
        .build()?;
    println!(
        "worker {} consuming {} on {}",
        consumer.name(),
        cfg.redis.stream,
        cfg.redis.url
    );
    let report = consumer
        .run_until(serve::signal())
        .await
        .map_err(|e| anyhow::anyhow!("--redis-url {}: {e}", cfg.redis.url))?;
    eprintln!(
        "orders worker: stopped ({} drained, {} handed back, {} left pending{}); {:?}",
        report.drained,
        report.handed_back,
        report.left_pending,
        if report.timed_out {
            ", drain timeout passed"
        } else {
            ""
        },
        consumer.snapshot()
    );
    let store = storage.clone();
    tokio::task::spawn_blocking(move || store.shutdown(STORAGE_GRACE)).await?;
    Ok(())
}
