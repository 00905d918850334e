//! Shutdown under load: POSTs at a steady rate, SIGTERM in the middle, and afterwards every
//! id that got a 201 is in the table; the process exits 0.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

const ORDER: &str = r#"{"user_id": 1, "item": "book", "quantity": 2}"#;

/// Sends orders from 16 clients until the service stops answering; SIGTERM after 1 s.
/// Returns the ids that got 201 and the counts of other answers.
async fn load_then_sigterm(p: &mut Proc) -> (BTreeSet<i64>, u64) {
    let ids = Arc::new(Mutex::new(BTreeSet::new()));
    let other = Arc::new(Mutex::new(0u64));
    let url = p.url("/api/orders");
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (ids, other, url) = (ids.clone(), other.clone(), url.clone());
            tokio::spawn(async move {
                let c = client();
                let mut tick = tokio::time::interval(Duration::from_millis(5));
                loop {
                    tick.tick().await;
                    let r = c.post(&url).header("content-type", "application/json").body(ORDER).send().await;
                    let Ok(r) = r else { return };
                    if r.status() == 201 {
                        let Ok(v) = r.json::<serde_json::Value>().await else { continue };
                        ids.lock().unwrap().insert(v["id"].as_i64().unwrap());
                    } else {
                        *other.lock().unwrap() += 1;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = ids.lock().unwrap().len();
    assert!(before > 0, "no order committed before SIGTERM");
    p.sigterm();
    let status = tokio::task::block_in_place(|| p.wait_exit(Duration::from_secs(20)));
    assert!(status.success(), "exit status {status:?}: {}", p.log_text());
    for c in clients {
        let _ = tokio::time::timeout(Duration::from_secs(15), c).await;
    }
    let ids = ids.lock().unwrap().clone();
    let other = *other.lock().unwrap();
    (ids, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_no_201_order_is_lost_on_sigterm() {
    let dir = TempDir::new("shutdown");
    let mut p = service(&dir, &["--drain-timeout", "5000"]);
    let (ids, _other) = load_then_sigterm(&mut p).await;
    let table: BTreeSet<i64> = sqlite_ids(&dir).into_iter().collect();
    let missing: Vec<_> = ids.difference(&table).collect();
    assert!(missing.is_empty(), "201 orders missing from the table: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_no_201_order_is_lost_on_sigterm() {
    let Some((url, pg)) = postgres("shutdown").await else { return };
    let dir = TempDir::new("shutdown-pg");
    let mut p = service_on(&dir, &url, &["--drain-timeout", "5000"]);
    let (ids, _other) = load_then_sigterm(&mut p).await;
    let table: BTreeSet<i64> = postgres_ids(&pg).await.into_iter().collect();
    let missing: Vec<_> = ids.difference(&table).collect();
    assert!(missing.is_empty(), "201 orders missing from the table: {missing:?}");
}
