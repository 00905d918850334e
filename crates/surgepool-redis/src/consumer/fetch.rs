//! The fetch loop: permits first, then exactly that many jobs from Redis.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use redis::aio::ConnectionManager;
use redis::Value;
use surgepool::limit::Permit;
use surgepool::Pool;
use tokio::sync::{mpsc, watch};

use super::settle::{Outcome, Settle};
use super::{lock, InFlight, Shared};
use crate::job::{Job, Source};
use crate::scripts::scripts;
use crate::stats::Counters;

/// Backoff after a failed Redis call: doubles from the first to the last.
pub(crate) const BACKOFF_FIRST: Duration = Duration::from_millis(10);
pub(crate) const BACKOFF_LAST: Duration = Duration::from_secs(1);

/// The smallest run time reported to the limit.
const MIN_SAMPLE: Duration = Duration::from_millis(1);

/// The longest the fetch waits for one more permit before it reads with what it has.
const GATHER_WAIT: Duration = Duration::from_millis(1);

/// One entry read or reclaimed from the stream.
struct Entry {
    entry_id: String,
    job_id: String,
    payload: Bytes,
    deliveries: u32,
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    pool: Pool,
    mut conn: ConnectionManager,
    settle: mpsc::UnboundedSender<Settle>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_FIRST;
    let mut cursor = "0-0".to_owned();
    let reclaim_every = shared.config.lease_floor / 4;
    let mut next_reclaim = Instant::now();
    let mut demand = Demand::new(shared.config.max_fetch);
    loop {
        if *stop.borrow() {
            return;
        }
        // Wait for one permit (or the stop), then take every other free one: k = free permits.
        let first = tokio::select! {
            p = shared.limiter.acquire() => p,
            _ = stop.changed() => return,
        };
        let permits = gather(&shared, first, demand.cap).await;

        let mut permits = permits;
        let mut failed = false;
        if Instant::now() >= next_reclaim {
            match reclaim(&shared, &mut cursor, permits.len()).await {
                Ok(entries) => {
                    for e in entries {
                        dispatch(&shared, &pool, &settle, e, &mut permits);
                    }
                    // A partial pass (cursor not back at the start) goes on at the next
                    // fetch: a dead consumer's jobs move within one lease plus one interval.
                    if cursor == "0-0" {
                        next_reclaim = Instant::now() + reclaim_every;
                    }
                }
                Err(()) => failed = true,
            }
        }
        if !permits.is_empty() && !failed {
            let asked = permits.len();
            match read(&shared, &mut conn, asked).await {
                Ok(entries) => {
                    demand.after_read(asked, entries.len());
                    if !entries.is_empty() {
                        Counters::add(&shared.counters.reads, 1);
                    }
                    for e in entries {
                        Counters::add(&shared.counters.fetched, 1);
                        dispatch(&shared, &pool, &settle, e, &mut permits);
                    }
                }
                Err(()) => failed = true,
            }
        }
        // Give back what the fetch did not use, without a sample: it says nothing about the
        // downstream.
        for p in permits {
            p.ignore();
        }
        if failed {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_LAST);
        } else {
            backoff = BACKOFF_FIRST;
        }
    }
}

/// How many jobs the next fetch may ask for: twice what the stream gave last time, doubling
/// while reads come back full, at most `max_fetch`.
///
/// The permits of a fetch are held while the read waits (`BLOCK`), and a job that finishes
/// meanwhile reports them to the limit as in flight. Before this cap, an idle consumer held
/// *every* free permit through each blocking read, so the limit looked used up all the time
/// (and each failed `try_acquire` counted as a refusal): the adaptive limit grew to 2048
/// with 11 jobs running (the lab's `fleet` at 2,400 jobs/s), and when the downstream
/// slowed, the next reads took hundreds of jobs at once.
#[derive(Debug)]
struct Demand {
    cap: usize,
    max: usize,
}

impl Demand {
    fn new(max_fetch: usize) -> Demand {
        let max = max_fetch.max(1);
        Demand { cap: max, max }
    }

    /// After a read that asked for `asked` entries and got `got`.
    fn after_read(&mut self, asked: usize, got: usize) {
        self.cap = got.min(asked).saturating_mul(2).clamp(1, self.max);
    }
}

/// Takes free permits, up to `cap` (see [`Demand`]). While fewer than half the limit are free and
/// jobs of the last fetch are still finishing, waits a moment for them (at most
/// `GATHER_WAIT` per permit): otherwise short jobs would be fetched one per round trip, as
/// each permit comes back alone (a low watermark, like Kafka's `fetch.min.bytes`).
///
/// It takes a permit only while one is free, so that it never counts as a refused caller:
/// running out of permits here is not demand turned away.
async fn gather(shared: &Shared, first: Permit, cap: usize) -> Vec<Permit> {
    let max = cap.clamp(1, shared.config.max_fetch.max(1));
    let mut permits = vec![first];
    loop {
        while permits.len() < max && shared.limiter.in_flight() < shared.limiter.limit() {
            match shared.limiter.try_acquire() {
                Some(p) => permits.push(p),
                None => break,
            }
        }
        let want = (shared.limiter.limit() / 2).clamp(1, max);
        if permits.len() >= want || shared.limiter.in_flight() <= permits.len() {
            return permits;
        }
        match tokio::time::timeout(GATHER_WAIT, shared.limiter.acquire()).await {
            Ok(p) => permits.push(p),
            Err(_) => return permits,
        }
    }
}

/// XREADGROUP COUNT k on the fetcher's own connection (BLOCK would hold up a shared one).
async fn read(shared: &Shared, conn: &mut ConnectionManager, k: usize) -> Result<Vec<Entry>, ()> {
    let q = &shared.queue.inner;
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(&q.group)
        .arg(&shared.config.name)
        .arg("COUNT")
        .arg(k)
        .arg("BLOCK")
        .arg(shared.config.block.as_millis() as u64)
        .arg("STREAMS")
        .arg(&q.name)
        .arg(">");
    // The timeout covers the BLOCK too. A read cut off by it may have delivered entries that
    // never reach us: they stay pending under our name and are reclaimed after the lease.
    let wait = q.op_timeout + shared.config.block;
    let value: Value = match tokio::time::timeout(wait, cmd.query_async(conn)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            if e.code() == Some("NOGROUP") {
                // Redis restarted without the group (no persistence): recreate it.
                let _ = shared.queue.recreate_group().await;
            }
            shared.note_redis_error(&crate::error::RedisError::new("fetch", e));
            return Err(());
        }
        Err(_) => {
            shared.note_redis_error(&crate::error::RedisError::timeout("fetch"));
            return Err(());
        }
    };
    Ok(parse_read(value))
}

/// XAUTOCLAIM (in reclaim.lua) the jobs whose lease lapsed, up to k of them.
async fn reclaim(shared: &Shared, cursor: &mut String, k: usize) -> Result<Vec<Entry>, ()> {
    let q = &shared.queue;
    let lease_ms = u64::try_from(shared.lease().as_millis()).unwrap_or(u64::MAX);
    let mut inv = scripts().reclaim.key(&q.inner.name);
    inv.key(&q.inner.dead_key)
        .arg(&q.inner.group)
        .arg(&shared.config.name)
        .arg(lease_ms)
        .arg(cursor.as_str())
        .arg(k)
        .arg(shared.config.max_deliveries);
    let mut conn = q.inner.conn.clone();
    let value: Value = match q.bounded("reclaim", inv.invoke_async(&mut conn)).await {
        Ok(v) => v,
        Err(e) => {
            shared.note_redis_error(&e);
            return Err(());
        }
    };
    let Value::Array(mut parts) = value else {
        return Ok(Vec::new());
    };
    if parts.len() < 3 {
        return Ok(Vec::new());
    }
    let dead: u64 = redis::from_redis_value(parts.pop().unwrap_or(Value::Nil)).unwrap_or(0);
    let rows = parts.pop().unwrap_or(Value::Nil);
    if let Some(next) = as_string(parts.pop().unwrap_or(Value::Nil)) {
        *cursor = next;
    }
    let c = &shared.counters;
    Counters::add(&c.dead, dead);
    Counters::add(&c.fetched, dead);
    Counters::add(&c.reclaimed, dead);
    let mut out = Vec::new();
    if let Value::Array(rows) = rows {
        for row in rows {
            let Value::Array(f) = row else { continue };
            let mut f = f.into_iter();
            let (Some(id), Some(j), Some(p), Some(d)) = (f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            let (Some(entry_id), Some(job_id)) = (as_string(id), as_string(j)) else {
                continue;
            };
            let deliveries: u32 = redis::from_redis_value(d).unwrap_or(1);
            out.push(Entry {
                entry_id,
                job_id,
                payload: as_bytes(p),
                deliveries,
            });
        }
    }
    Counters::add(&c.reclaimed, out.len() as u64);
    Counters::add(&c.fetched, out.len() as u64);
    Ok(out)
}

/// Starts one job in the pool with one of the permits.
fn dispatch(
    shared: &Arc<Shared>,
    pool: &Pool,
    settle: &mpsc::UnboundedSender<Settle>,
    entry: Entry,
    permits: &mut Vec<Permit>,
) {
    {
        let mut map = lock(&shared.in_flight);
        if map.contains_key(&entry.entry_id) {
            // Our own job, reclaimed after a renewal failed (Redis was down): it is still
            // running here, so do not run it twice. It still counts as fetched and is settled
            // once, so `fetched` and the outcomes would disagree by one: count it as stale.
            Counters::add(&shared.counters.stale, 1);
            return;
        }
        map.insert(
            entry.entry_id.clone(),
            InFlight {
                job_id: entry.job_id.clone(),
                payload: entry.payload.clone(),
                deliveries: entry.deliveries,
                running: true,
            },
        );
    }
    let Some(permit) = permits.pop() else {
        // Never: the reply holds at most k entries. Left in flight, it is handed back at drain.
        return;
    };
    let job = Job {
        id: entry.job_id,
        payload: entry.payload,
        deliveries: entry.deliveries,
        source: Source::Stream,
    };
    let entry_id = entry.entry_id;
    let task_shared = shared.clone();
    let settle = settle.clone();
    let task = async move {
        let started = Instant::now();
        let handler = task_shared.handler.clone();
        // A handler that panics, in its call or its future, is a failed run like any other.
        let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(job))) {
            Ok(fut) => match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(Ok(())) => Outcome::Ok,
                Ok(Err(e)) => Outcome::Failed(e.0),
                Err(panic) => Outcome::Failed(panic_message(&panic)),
            },
            Err(panic) => Outcome::Failed(panic_message(&panic)),
        };
        let ran = started.elapsed();
        lock(&task_shared.run_times).record(ran);
        match outcome {
            // The sample is the handler's run time, but never below the fetch's round-trip
            // scale: sub-millisecond run times are noise to the limit (it cannot pull faster
            // than one round trip per batch), and the climber then decides on goodput alone.
            Outcome::Ok => permit.success_with_latency(ran.max(MIN_SAMPLE)),
            Outcome::Failed(_) => permit.dropped(),
        }
        if let Some(job) = lock(&task_shared.in_flight).get_mut(&entry_id) {
            job.running = false;
        }
        let _ = settle.send(Settle { entry_id, outcome });
    };
    // The pool only runs the job (the limiter already admitted it); Closed only during a
    // drain, and then the job stays in flight and is handed back.
    let _ = pool.try_submit(task);
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    format!("handler panicked: {msg}")
}

/// XREADGROUP's reply: `[[stream, [[id, [field, value, ...]], ...]]]`, or nil.
fn parse_read(value: Value) -> Vec<Entry> {
    let mut out = Vec::new();
    let Value::Array(streams) = value else {
        return out;
    };
    for stream in streams {
        let Value::Array(mut parts) = stream else {
            continue;
        };
        let Some(Value::Array(entries)) = parts.pop() else {
            continue;
        };
        for e in entries {
            let Value::Array(mut kv) = e else { continue };
            if kv.len() != 2 {
                continue;
            }
            let fields = kv.pop().unwrap_or(Value::Nil);
            let Some(entry_id) = as_string(kv.pop().unwrap_or(Value::Nil)) else {
                continue;
            };
            let mut entry = Entry {
                job_id: entry_id.clone(),
                entry_id,
                payload: Bytes::new(),
                deliveries: 1,
            };
            if let Value::Array(fields) = fields {
                let mut it = fields.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    match as_bytes(k).as_ref() {
                        b"p" => entry.payload = as_bytes(v),
                        b"j" => entry.job_id = as_string(v).unwrap_or(entry.job_id),
                        b"d" => {
                            let prior: u32 = redis::from_redis_value(v).unwrap_or(0);
                            entry.deliveries = prior.saturating_add(1);
                        }
                        _ => {}
                    }
                }
            }
            out.push(entry);
        }
    }
    out
}

pub(crate) fn as_bytes(v: Value) -> Bytes {
    match v {
        Value::BulkString(b) => Bytes::from(b),
        Value::SimpleString(s) => Bytes::from(s),
        Value::Int(i) => Bytes::from(i.to_string()),
        _ => Bytes::new(),
    }
}

pub(crate) fn as_string(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::Demand;

    #[test]
    fn demand_doubles_while_reads_come_back_full_and_follows_short_ones() {
        let mut d = Demand::new(1000);
        assert_eq!(d.cap, 1000, "a fresh consumer may meet a backlog");
        d.after_read(1000, 3);
        assert_eq!(d.cap, 6, "a short read: twice what the stream held");
        d.after_read(6, 0);
        assert_eq!(d.cap, 1, "an empty read still asks for one");
        d.after_read(1, 1);
        assert_eq!(d.cap, 2);
        d.after_read(2, 2);
        assert_eq!(d.cap, 4, "full reads double");
        d.after_read(800, 800);
        assert_eq!(d.cap, 1000, "never past max_fetch");
        let mut huge = Demand::new(usize::MAX);
        huge.after_read(usize::MAX, usize::MAX);
        assert_eq!(huge.cap, usize::MAX, "no overflow");
        assert_eq!(Demand::new(0).cap, 1);
    }
}
