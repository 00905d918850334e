//! Fire-and-forget work with `try_spawn`, then a graceful shutdown that drains what was
//! accepted and cancels what outlives the grace period, with an exact report.
//!
//! Run: `cargo run --release -p surgepool --example spawn_shutdown`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use surgepool::{Limit, Pool};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::builder()
        .limit(Limit::adaptive()) // the default: finds the concurrency by itself
        .queue_capacity(256)
        .build()?;
    let sent = Arc::new(AtomicU64::new(0));

    // Stand-in for "send a webhook": nobody awaits the result, so no handle is made and a
    // small future is stored inline (no allocation per task on a warm pool).
    let mut refused = 0;
    for i in 0..1_000u64 {
        let sent = Arc::clone(&sent);
        let job = async move {
            tokio::time::sleep(Duration::from_millis(1 + i % 5)).await;
            sent.fetch_add(1, Ordering::Relaxed);
        };
        if pool.try_spawn(job).is_err() {
            // Full or closed: the job came back. A real service would push it to a durable
            // queue (see surgepool-redis) or answer 503.
            refused += 1;
        }
    }

    // On SIGTERM a service calls this: stop accepting, drain, cancel after the grace period.
    let report = pool.shutdown_timeout(Duration::from_secs(5)).await;
    let snap = pool.snapshot();
    println!(
        "sent {}, refused {refused}; drained {} after shutdown began, cancelled {}, timed out: {}",
        sent.load(Ordering::Relaxed),
        report.drained,
        report.cancelled,
        report.timed_out
    );
    // Every accepted task is accounted for exactly once.
    assert_eq!(
        snap.accepted,
        snap.completed + snap.panicked + snap.cancelled + snap.shed + snap.queued + snap.running
    );
    Ok(())
}
