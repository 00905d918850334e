//! `run_until`: start the tasks, wait for the signal, then drain.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use surgepool::{Limit, Pool};
use tokio::sync::{mpsc, watch};

use super::fetch::{BACKOFF_FIRST, BACKOFF_LAST};
use super::{fetch, lock, settle, upkeep, Shared};
use crate::error::RedisError;
use crate::queue::connect_manager;
use crate::scripts::scripts;
use crate::stats::Counters;

/// The pool only runs what the limiter admitted, so its own limit must never bind.
const EXEC_LIMIT: usize = 1 << 20;
/// Jobs handed back per script call.
const HANDBACK_CHUNK: usize = 250;

/// What a drain did ([`Consumer::run_until`](crate::Consumer::run_until)).
///
/// # Examples
///
/// ```
/// let report = surgepool_redis::DrainReport::default();
/// assert_eq!(report.handed_back + report.left_pending, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// Jobs that finished during the grace period.
    pub drained: u64,
    /// Jobs cancelled at the end of the grace period.
    pub cancelled: u64,
    /// Jobs handed back to the stream (the cancelled ones, unless settled elsewhere).
    pub handed_back: u64,
    /// Jobs that could be neither settled nor handed back (Redis down until the deadline):
    /// they stay pending in Redis and are reclaimed after their lease.
    pub left_pending: u64,
    /// `true` when the grace period ran out with jobs still running.
    pub timed_out: bool,
}

pub(crate) async fn run<S>(shared: Arc<Shared>, signal: S) -> Result<DrainReport, RedisError>
where
    S: Future<Output = ()> + Send,
{
    let q = &shared.queue.inner;
    // The fetcher's own connection: a BLOCKing read would hold up every call behind it on a
    // shared, multiplexed one.
    let fetch_conn = connect_manager(&q.client, q.op_timeout + shared.config.block).await?;
    let pool = Pool::builder()
        .limit(Limit::fixed(EXEC_LIMIT))
        .queue_capacity(0)
        .build()
        .map_err(|e| RedisError::new("start", e))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (upkeep_tx, upkeep_rx) = watch::channel(false);
    let (give_up_tx, give_up_rx) = watch::channel(false);
    let (settle_tx, settle_rx) = mpsc::unbounded_channel();
    let mut settler = AbortOnDrop(tokio::spawn(settle::run(
        shared.clone(),
        settle_rx,
        give_up_rx,
    )));
    let upkeeper = AbortOnDrop(tokio::spawn(upkeep::run(shared.clone(), upkeep_rx)));
    let fetcher = AbortOnDrop(tokio::spawn(fetch::run(
        shared.clone(),
        pool.clone(),
        fetch_conn,
        settle_tx,
        stop_rx,
    )));

    signal.await;
    let _ = stop_tx.send(true);
    let _ = (&mut { fetcher }.0).await;
    let shutdown = pool.shutdown_timeout(shared.config.drain_grace).await;

    // Every task is finished or cancelled, so every settle sender is gone: the settler ends
    // once all is settled, or at the deadline if Redis stays down.
    let deadline = (q.op_timeout * 4).max(Duration::from_secs(1));
    if tokio::time::timeout(deadline, &mut settler.0)
        .await
        .is_err()
    {
        let _ = give_up_tx.send(true);
        let _ = (&mut settler.0).await;
    }
    let handed_back = hand_back(&shared, deadline).await;
    let _ = upkeep_tx.send(true);
    let _ = (&mut { upkeeper }.0).await;
    Ok(DrainReport {
        drained: shutdown.drained,
        cancelled: shutdown.cancelled,
        handed_back,
        left_pending: lock(&shared.in_flight).len() as u64,
        timed_out: shutdown.timed_out,
    })
}

/// Aborts the task when dropped: if `run_until` is dropped (the consumer stops without a
/// drain), its fetcher, settler and renewer stop with it, as if the process had died.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Hands the unfinished jobs back (handback.lua), retrying until `deadline`.
async fn hand_back(shared: &Shared, deadline: Duration) -> u64 {
    let q = &shared.queue;
    let jobs: Vec<(String, String, u32, bytes::Bytes)> = lock(&shared.in_flight)
        .iter()
        .filter(|(_, j)| j.running)
        .map(|(id, j)| {
            (
                id.clone(),
                j.job_id.clone(),
                j.deliveries,
                j.payload.clone(),
            )
        })
        .collect();
    let mut handed = 0;
    let mut conn = q.inner.conn.clone();
    let give_up = tokio::time::Instant::now() + deadline;
    for chunk in jobs.chunks(HANDBACK_CHUNK) {
        let mut backoff = BACKOFF_FIRST;
        loop {
            let mut inv = scripts().handback.key(&q.inner.name);
            inv.arg(&q.inner.group);
            for (entry_id, job_id, deliveries, payload) in chunk {
                // The interrupted delivery is not held against the job.
                inv.arg(entry_id.as_str())
                    .arg(job_id.as_str())
                    .arg(deliveries.saturating_sub(1))
                    .arg(&payload[..]);
            }
            match q
                .bounded::<u64>("hand back", inv.invoke_async(&mut conn))
                .await
            {
                Ok(n) => {
                    handed += n;
                    let c = &shared.counters;
                    Counters::add(&c.handed_back, n);
                    Counters::add(&c.stale, chunk.len() as u64 - n);
                    let mut map = lock(&shared.in_flight);
                    for (entry_id, ..) in chunk {
                        map.remove(entry_id);
                    }
                    break;
                }
                Err(e) => {
                    shared.note_redis_error(&e);
                    if tokio::time::Instant::now() + backoff > give_up {
                        return handed;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_LAST);
                }
            }
        }
    }
    handed
}
