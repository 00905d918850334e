//! The settler: applies finished jobs' outcomes in Redis, in batches, and keeps retrying them
//! while Redis is down, so a job that ran is acked once Redis is back.

use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use tokio::sync::{mpsc, watch};

use super::fetch::{BACKOFF_FIRST, BACKOFF_LAST};
use super::{lock, Shared};
use crate::scripts::scripts;
use crate::stats::Counters;

/// The most outcomes settled per round trip.
const SETTLE_BATCH: usize = 1000;

/// How long an ack batch's receipt outlives a consumer that died before its next batch (the
/// next batch deletes it otherwise).
const RECEIPT_TTL: Duration = Duration::from_secs(3600);

/// Names the receipt of each ack batch (`ack.lua`): unique per settler, so that a retry of a
/// batch whose reply was lost finds its own receipt and no other.
struct Receipts {
    prefix: String,
    seq: u64,
    /// The receipt of the last batch whose reply arrived; the next batch deletes it.
    previous: Option<String>,
}

impl Receipts {
    fn new(shared: &Shared) -> Receipts {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Receipts {
            prefix: format!(
                "{}:ack:{}:{}:{nanos:x}",
                shared.queue.inner.name,
                shared.config.name,
                std::process::id()
            ),
            seq: 0,
            previous: None,
        }
    }

    /// The receipt for a new batch.
    fn next(&mut self) -> String {
        self.seq += 1;
        format!("{}:{}", self.prefix, self.seq)
    }
}

/// How a job's run ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Ok,
    Failed(String),
}

/// One finished job, waiting to be settled in Redis.
#[derive(Debug)]
pub(crate) struct Settle {
    pub(crate) entry_id: String,
    pub(crate) outcome: Outcome,
}

/// Runs until every sender is gone and all is settled, or until `give_up` turns true (the
/// drain's deadline while Redis is down): what is left stays pending in Redis.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Settle>,
    mut give_up: watch::Receiver<bool>,
) {
    let mut batch: Vec<Settle> = Vec::with_capacity(SETTLE_BATCH);
    let mut receipts = Receipts::new(&shared);
    loop {
        let Some(first) = rx.recv().await else { return };
        batch.push(first);
        while batch.len() < SETTLE_BATCH {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        let mut backoff = BACKOFF_FIRST;
        // One receipt for the batch and all its retries: a retry sends the same acks.
        let receipt = receipts.next();
        while !batch.is_empty() {
            if settle_batch(&shared, &mut batch, &receipt, &mut receipts.previous).await {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = give_up.wait_for(|g| *g) => return,
            }
            backoff = (backoff * 2).min(BACKOFF_LAST);
        }
    }
}

/// Settles what it can; removes the settled from `batch`. `false` when Redis failed.
/// `receipt` names this batch's ack receipt; `previous` is the last one whose reply arrived
/// (deleted by this call, then replaced by `receipt`).
async fn settle_batch(
    shared: &Shared,
    batch: &mut Vec<Settle>,
    receipt: &str,
    previous: &mut Option<String>,
) -> bool {
    let q = &shared.queue;
    let mut conn = q.inner.conn.clone();
    let acks: Vec<&str> = batch
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Ok))
        .map(|s| s.entry_id.as_str())
        .collect();
    if !acks.is_empty() {
        let mut inv = scripts().ack.key(&q.inner.name);
        inv.key(receipt);
        if let Some(previous) = previous.as_deref() {
            inv.key(previous);
        }
        inv.arg(&q.inner.group)
            .arg(u64::try_from(RECEIPT_TTL.as_millis()).unwrap_or(u64::MAX));
        for id in &acks {
            inv.arg(*id);
        }
        let flags: Vec<i64> = match q.bounded("ack", inv.invoke_async(&mut conn)).await {
            Ok(f) => f,
            Err(e) => {
                shared.note_redis_error(&e);
                return false;
            }
        };
        *previous = Some(receipt.to_owned());
        let acked = flags.iter().filter(|f| **f == 1).count() as u64;
        Counters::add(&shared.counters.acked, acked);
        Counters::add(&shared.counters.stale, flags.len() as u64 - acked);
        let mut map = lock(&shared.in_flight);
        batch.retain(|s| {
            let done = matches!(s.outcome, Outcome::Ok);
            if done {
                map.remove(&s.entry_id);
            }
            !done
        });
    }
    // Failures are rare: one script call each, pipelined would save little.
    while let Some(s) = batch.last() {
        let Outcome::Failed(error) = &s.outcome else {
            break;
        };
        let Some((job_id, payload, deliveries)) = lock(&shared.in_flight)
            .get(&s.entry_id)
            .map(|j| (j.job_id.clone(), j.payload.clone(), j.deliveries))
        else {
            batch.pop();
            continue;
        };
        let delay = retry_delay(shared, deliveries);
        let mut inv = scripts().fail.key(&q.inner.name);
        inv.key(&q.inner.retry_key)
            .key(&q.inner.dead_key)
            .arg(&q.inner.group)
            .arg(&s.entry_id)
            .arg(&job_id)
            .arg(deliveries)
            .arg(shared.config.max_deliveries)
            .arg(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX))
            .arg(&payload[..])
            .arg(error.as_str());
        let result: Value = match q.bounded("retry", inv.invoke_async(&mut conn)).await {
            Ok(v) => v,
            Err(e) => {
                shared.note_redis_error(&e);
                return false;
            }
        };
        let c = &shared.counters;
        match result {
            Value::Int(1) => Counters::add(&c.retried, 1),
            Value::Int(2) => Counters::add(&c.dead, 1),
            _ => Counters::add(&c.stale, 1),
        }
        lock(&shared.in_flight).remove(&s.entry_id);
        batch.pop();
    }
    true
}

/// `base × 2^(deliveries-1)`, at most `max`.
fn retry_delay(shared: &Shared, deliveries: u32) -> Duration {
    let c = &shared.config;
    let exp = deliveries.saturating_sub(1).min(30);
    c.retry_base.saturating_mul(1u32 << exp).min(c.retry_max)
}
