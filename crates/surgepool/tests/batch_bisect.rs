//! Poison items do not sink their batch: with `OnFailure::Bisect` the failed batch is
//! retried in halves until the failing items stand alone; with `FailBatch` all fail.

use std::sync::{Arc, Mutex};

use surgepool::batch::{BatchSnapshot, Batcher, OnFailure};
use surgepool::Limit;
use tokio::sync::Semaphore;

fn assert_identities(s: &BatchSnapshot) {
    assert_eq!(s.submitted, s.accepted + s.rejected, "{s:?}");
    assert_eq!(
        s.accepted,
        s.committed + s.failed + s.shed + s.cancelled + s.queued + s.in_flush,
        "{s:?}"
    );
}

/// A batcher whose first flush waits for `gate`, so the test can queue a whole batch
/// behind it; a flush fails (atomically: nothing of it is kept) if it holds a poison item.
/// `committed` collects what the "database" kept.
fn batcher(
    policy: OnFailure,
    gate: Arc<Semaphore>,
    committed: Arc<Mutex<Vec<u32>>>,
) -> Batcher<u32, u32> {
    Batcher::builder(move |items: Vec<u32>| {
        let gate = gate.clone();
        let committed = committed.clone();
        async move {
            gate.acquire().await.unwrap().forget();
            if let Some(bad) = items.iter().find(|i| **i % 1000 == 666) {
                return Err(format!("row {bad} violates a constraint"));
            }
            committed.lock().unwrap().extend(&items);
            Ok(items.iter().map(|i| i * 2).collect())
        }
    })
    .limit(Limit::fixed(1))
    .on_failure(policy)
    .build()
    .unwrap()
}

#[tokio::test]
async fn a_poison_item_fails_alone() {
    let gate = Arc::new(Semaphore::new(0));
    let db = Arc::new(Mutex::new(Vec::new()));
    let batcher = batcher(OnFailure::Bisect, gate.clone(), db.clone());
    let opener = batcher.try_submit(1).unwrap();
    let receipts: Vec<_> = (0..1000).map(|i| batcher.try_submit(i).unwrap()).collect();
    gate.add_permits(1_000_000);
    assert_eq!(opener.await.unwrap(), 2);
    for (i, r) in receipts.into_iter().enumerate() {
        let i = i as u32;
        match r.await {
            Ok(out) => assert_eq!(out, i * 2),
            Err(err) => {
                assert_eq!(i, 666, "only the poison item fails: {i} got {err}");
                assert!(err.is_flush_error());
                assert!(err.to_string().contains("row 666"), "{err}");
            }
        }
    }
    let s = batcher.snapshot();
    assert_identities(&s);
    assert_eq!((s.committed, s.failed), (1000, 1));
    // Each level of the bisection fails one half (log2(1000) ~ 10 levels) and flushes two.
    assert_eq!(s.bisections, 10, "{s:?}");
    assert_eq!(s.flushes, 2 + 2 * 10, "{s:?}");
    let mut kept = db.lock().unwrap().clone();
    kept.sort_unstable();
    let mut want: Vec<u32> = (0..1000).filter(|i| *i != 666).collect();
    want.push(1);
    want.sort_unstable();
    assert_eq!(kept, want, "every good row committed exactly once");
}

#[tokio::test]
async fn several_poison_items_each_fail_alone() {
    let gate = Arc::new(Semaphore::new(0));
    let db = Arc::new(Mutex::new(Vec::new()));
    let batcher = batcher(OnFailure::Bisect, gate.clone(), db.clone());
    let opener = batcher.try_submit(1).unwrap();
    let items = [5, 666, 7, 1666, 1667, 2666];
    let receipts: Vec<_> = items
        .iter()
        .map(|i| batcher.try_submit(*i).unwrap())
        .collect();
    gate.add_permits(1000);
    opener.await.unwrap();
    let mut failed = Vec::new();
    for (item, r) in items.iter().zip(receipts) {
        if r.await.is_err() {
            failed.push(*item);
        }
    }
    assert_eq!(failed, vec![666, 1666, 2666]);
    let s = batcher.snapshot();
    assert_identities(&s);
    assert_eq!((s.committed, s.failed), (4, 3));
}

#[tokio::test]
async fn fail_batch_fails_every_item() {
    let gate = Arc::new(Semaphore::new(0));
    let db = Arc::new(Mutex::new(Vec::new()));
    let batcher = batcher(OnFailure::FailBatch, gate.clone(), db.clone());
    let opener = batcher.try_submit(1).unwrap();
    let receipts: Vec<_> = (660..670).map(|i| batcher.try_submit(i).unwrap()).collect();
    gate.add_permits(1000);
    opener.await.unwrap();
    for r in receipts {
        assert!(r.await.unwrap_err().is_flush_error());
    }
    let s = batcher.snapshot();
    assert_identities(&s);
    assert_eq!(
        (s.committed, s.failed, s.bisections, s.flushes),
        (1, 10, 0, 2)
    );
    assert_eq!(*db.lock().unwrap(), vec![1]);
}
