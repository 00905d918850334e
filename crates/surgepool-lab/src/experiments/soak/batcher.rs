//! The soak's batcher part: a long-lived `Batcher` (group commit, `OnFailure::Bisect`)
//! whose flush sometimes fails on a poison item, returns one output too few or panics, fed
//! ~2000 items a second with a burst every 5 s that fills its queue.
//!
//! Beyond the accounting (every accepted item ends committed, failed, shed or cancelled), each
//! outcome is checked against what it must be (`wrong_outcomes`): a committed item's output
//! is its own (`2 × item`), and a flush *error* reaches only poison items, since bisection
//! isolates them. A short output or a panic fails its whole batch, by design (the flush may
//! have written: retrying halves could write twice), so those errors may reach any item.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use surgepool::batch::{BatchSnapshot, Batcher, OnFailure};
use surgepool::Limit;
use tokio::time::{timeout, Instant};

use super::workload::{intended_panic, Arrivals, Live, PartResult, HANDLE_BOUND};

/// Items the flush refuses: the transaction rolls back.
fn poison(item: u64) -> bool {
    item % 997 == 1
}

/// A batch holding one of these gets one output too few.
fn short(item: u64) -> bool {
    item % 1499 == 2
}

/// A batch holding one of these panics in its flush.
fn panics(item: u64) -> bool {
    item % 2003 == 3
}

async fn flush(items: Vec<u64>) -> Result<Vec<u64>, &'static str> {
    // A transaction: about a millisecond, plus a little per row.
    tokio::time::sleep(Duration::from_micros(800 + 2 * items.len() as u64)).await;
    if items.iter().copied().any(panics) {
        intended_panic();
    }
    if items.iter().copied().any(poison) {
        return Err("poison item");
    }
    let mut out: Vec<u64> = items.iter().map(|i| i * 2).collect();
    if items.iter().copied().any(short) {
        out.pop();
    }
    Ok(out)
}

/// Checks a batcher snapshot against its identities (`BatchSnapshot`'s docs).
fn check(live: &Live, s: &BatchSnapshot) {
    let ok = s.submitted == s.accepted + s.rejected
        && s.accepted == s.committed + s.failed + s.shed + s.cancelled + s.queued + s.in_flush;
    live.record_check(ok, || format!("{s:?}"));
}

/// Runs until `until`, then shuts the batcher down and accounts for every item.
pub(crate) async fn batcher(until: Instant, live: Arc<Live>) -> anyhow::Result<PartResult> {
    let batcher: Batcher<u64, u64> = Batcher::builder(flush)
        .max_batch_size(256)
        .limit(Limit::adaptive())
        .queue_capacity(1024)
        .queue_timeout(Duration::from_millis(50))
        .on_failure(OnFailure::Bisect)
        .build()?;
    let wrong = Arc::new(AtomicU64::new(0));
    let checker = {
        let (batcher, live) = (batcher.clone(), live.clone());
        tokio::spawn(async move {
            while Instant::now() < until {
                check(&live, &batcher.snapshot());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut arrivals = Arrivals::new();
    let mut item: u64 = 0;
    while Instant::now() < until {
        for _ in 0..arrivals.next().await {
            item += 1;
            let Ok(receipt) = batcher.try_submit(item) else {
                continue;
            };
            let (live, wrong) = (live.clone(), wrong.clone());
            tokio::spawn(async move {
                let outcome = match timeout(HANDLE_BOUND, receipt).await {
                    Ok(outcome) => outcome,
                    Err(_) => return live.unresolved(),
                };
                live.done.fetch_add(1, Ordering::Relaxed);
                let right = match &outcome {
                    Ok(output) => *output == item * 2,
                    Err(e) if e.is_flush_error() => poison(item),
                    Err(e) => {
                        e.is_output_count() || e.is_panic() || e.is_shed() || e.is_cancelled()
                    }
                };
                if !right {
                    eprintln!("soak: batcher item {item}: wrong outcome {outcome:?}");
                    wrong.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    }
    let report = batcher.shutdown_timeout(Duration::from_secs(5)).await;
    if report.timed_out {
        eprintln!("soak: batcher drained late: {report:?}");
    }
    // Let the collectors see the last receipts resolve.
    tokio::time::sleep(Duration::from_millis(100)).await;
    checker.await?;
    let s = batcher.snapshot();
    check(&live, &s);
    let (snapshots_checked, violations, unresolved) = live.take_checks();
    let ended = s.committed + s.failed + s.shed + s.cancelled;
    Ok(PartResult {
        name: "batcher".to_owned(),
        submitted: s.submitted,
        accepted: s.accepted,
        rejected: s.rejected,
        completed: s.committed,
        panicked: 0,
        cancelled: s.cancelled,
        shed: s.shed,
        failed: s.failed,
        lost: s.accepted.abs_diff(ended) + s.queued + s.in_flush + unresolved,
        snapshots_checked,
        identities_violations: violations,
        wrong_outcomes: wrong.load(Ordering::Relaxed),
        cycles: s.flushes,
    })
}
