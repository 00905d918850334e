//! Lease upkeep and the retry mover.
//!
//! The lease is how long a pending job may sit idle before another consumer takes it over.
//! It follows the observed run times (4 × p99, within the configured floor and ceiling), not
//! a fixed 5 minutes, so a dead worker's jobs move on quickly. Live jobs renew their lease
//! every `floor / 4` (XCLAIM … JUSTID in renew.lua resets the idle time), so a slow job is not
//! stolen from a live worker even when it runs far past the lease.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{lock, Shared};
use crate::scripts::scripts;
use crate::stats::Counters;

/// Lease = this many × the p99 run time.
pub(crate) const LEASE_PER_P99: u32 = 4;
/// Run times kept for the p99 (a ring: the most recent ones).
const RUN_TIME_WINDOW: usize = 1024;
/// Entries renewed per script call.
const RENEW_CHUNK: usize = 500;
/// Due retries moved per script call.
const MOVE_CHUNK: usize = 500;
/// The mover checks the retry set at least this often.
const MOVE_EVERY_MAX: Duration = Duration::from_millis(100);

/// Recent run times.
#[derive(Debug, Default)]
pub(crate) struct RunTimes {
    ring: Vec<Duration>,
    next: usize,
}

impl RunTimes {
    pub(crate) fn record(&mut self, d: Duration) {
        if self.ring.len() < RUN_TIME_WINDOW {
            self.ring.push(d);
        } else {
            self.ring[self.next] = d;
            self.next = (self.next + 1) % RUN_TIME_WINDOW;
        }
    }

    /// The 99th percentile of the window; zero before any run (the lease is then the floor).
    pub(crate) fn p99(&self) -> Duration {
        if self.ring.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.ring.clone();
        let i = (sorted.len() * 99 / 100).min(sorted.len() - 1);
        *sorted.select_nth_unstable(i).1
    }
}

/// Renews leases and moves due retries until `stop`.
pub(crate) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    // Four renewals per floor: a renewal delayed by up to 3/4 of the floor (a busy machine,
    // a slow Redis call) still lands before any consumer's lease lapses.
    let renew_every = shared.config.lease_floor / 4;
    let move_every = shared
        .config
        .retry_base
        .clamp(Duration::from_millis(5), MOVE_EVERY_MAX);
    let tick = renew_every.min(move_every);
    let mut since_renew = Duration::ZERO;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        since_renew += tick;
        if since_renew >= renew_every {
            since_renew = Duration::ZERO;
            renew(&shared).await;
        }
        move_due(&shared).await;
    }
}

async fn renew(shared: &Shared) {
    let ids: Vec<String> = lock(&shared.in_flight).keys().cloned().collect();
    let q = &shared.queue;
    let mut conn = q.inner.conn.clone();
    for chunk in ids.chunks(RENEW_CHUNK) {
        let mut inv = scripts().renew.key(&q.inner.name);
        inv.arg(&q.inner.group).arg(&shared.config.name);
        for id in chunk {
            inv.arg(id.as_str());
        }
        if let Err(e) = q.bounded::<i64>("renew", inv.invoke_async(&mut conn)).await {
            shared.note_redis_error(&e);
            return;
        }
    }
}

async fn move_due(shared: &Shared) {
    let q = &shared.queue;
    let mut conn = q.inner.conn.clone();
    loop {
        let mut inv = scripts().mover.key(&q.inner.name);
        inv.key(&q.inner.retry_key).arg(MOVE_CHUNK);
        match q.bounded::<u64>("move", inv.invoke_async(&mut conn)).await {
            Ok(n) => {
                Counters::add(&shared.counters.moved, n);
                if n < MOVE_CHUNK as u64 {
                    return;
                }
            }
            Err(e) => {
                shared.note_redis_error(&e);
                return;
            }
        }
    }
}
