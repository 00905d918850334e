//! Shutdown under load: POSTs at a steady rate, SIGTERM in the middle, and afterwards every
//! id that got a 201 is in the table; the process exits 0.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

const ORDER: &str = r#"{"user_id": 1, "item": "book", "quantity": 2}"#;

/// What the clients saw.
#[derive(Debug, Default)]
struct Seen {
    ids: BTreeSet<i64>,
    /// Answers that promise nothing was written (4xx, 503, 504 "nothing was written").
    refused: u64,
    /// Answers or failures after which the order may or may not be in the table: a 504
    /// "outcome unknown", or a connection cut before any answer.
    unknown: u64,
}

/// Sends orders from 16 clients until the service stops answering; SIGTERM after 1 s.
async fn load_then_sigterm(p: &mut Proc) -> Seen {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let url = p.url("/api/orders");
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (seen, url) = (seen.clone(), url.clone());
            tokio::spawn(async move {
                let c = client();
                let mut tick = tokio::time::interval(Duration::from_millis(5));
                loop {
                    tick.tick().await;
                    let r = c
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(ORDER)
                        .send()
                        .await;
                    let Ok(r) = r else {
                        // Refused connections after the listener closed are the normal end;
                        // count any as unknown, to bound the table from above.
                        seen.lock().unwrap().unknown += 1;
                        return;
                    };
                    let status = r.status().as_u16();
                    let Ok(body) = r.text().await else {
                        seen.lock().unwrap().unknown += 1;
                        return;
                    };
                    let mut seen = seen.lock().unwrap();
                    if status == 201 {
                        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                        seen.ids.insert(v["id"].as_i64().unwrap());
                    } else if body.contains("outcome unknown") {
                        seen.unknown += 1;
                    } else {
                        seen.refused += 1;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = seen.lock().unwrap().ids.len();
    assert!(before > 0, "no order committed before SIGTERM");
    p.sigterm();
    let status = tokio::task::block_in_place(|| p.wait_exit(Duration::from_secs(20)));
    assert!(status.success(), "exit status {status:?}: {}", p.log_text());
    for c in clients {
        let _ = tokio::time::timeout(Duration::from_secs(15), c).await;
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    seen
}

/// Every 201 is in the table; beyond them, only orders whose outcome the client could not
/// know may be there (never one that was refused).
fn check(seen: &Seen, table: &BTreeSet<i64>) {
    let missing: Vec<_> = seen.ids.difference(table).collect();
    assert!(
        missing.is_empty(),
        "201 orders missing from the table: {missing:?}"
    );
    let extra = table.len() - seen.ids.len();
    assert!(
        extra as u64 <= seen.unknown,
        "{extra} rows beyond the 201s, but only {} answers left the outcome unknown ({seen:?})",
        seen.unknown
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_no_201_order_is_lost_on_sigterm() {
    let dir = TempDir::new("shutdown");
    let mut p = service(&dir, &["--drain-timeout", "5000"]);
    let seen = load_then_sigterm(&mut p).await;
    let table: BTreeSet<i64> = sqlite_ids(&dir).into_iter().collect();
    check(&seen, &table);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_no_201_order_is_lost_on_sigterm() {
    let Some(pg) = postgres("shutdown").await else {
        return;
    };
    let dir = TempDir::new("shutdown-pg");
    let mut p = service_on(&dir, &pg.url, &["--drain-timeout", "5000"]);
    let seen = load_then_sigterm(&mut p).await;
    let table: BTreeSet<i64> = postgres_ids(&pg.client).await.into_iter().collect();
    check(&seen, &table);
    pg.drop_schema().await;
}
