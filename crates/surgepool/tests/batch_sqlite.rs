//! A real SQLite round trip: items go through the batcher into a WAL database with
//! `synchronous=FULL`, each batch in one transaction on a `BlockingPool` thread; a poison
//! row (a CHECK violation) fails alone; the table holds exactly the committed rows.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection};
use surgepool::batch::{Batcher, OnFailure};
use surgepool::{BlockingPool, Limit};

#[derive(Clone, Debug)]
struct Order {
    user_id: i64,
    quantity: i64,
}

fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "surgepool-batch-{name}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("orders.db")
}

fn open(path: &PathBuf) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS orders (
             id INTEGER PRIMARY KEY,
             user_id INTEGER NOT NULL,
             quantity INTEGER NOT NULL CHECK (quantity > 0))",
    )
    .unwrap();
    conn
}

/// One transaction per batch, a prepared statement, one id per row, in order.
fn insert(conn: &mut Connection, orders: &[Order]) -> rusqlite::Result<Vec<i64>> {
    let tx = conn.transaction()?;
    let mut ids = Vec::with_capacity(orders.len());
    {
        let mut stmt =
            tx.prepare_cached("INSERT INTO orders (user_id, quantity) VALUES (?1, ?2)")?;
        for o in orders {
            stmt.execute(params![o.user_id, o.quantity])?;
            ids.push(tx.last_insert_rowid());
        }
    }
    tx.commit()?;
    Ok(ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_round_trip_with_a_poison_row() {
    let path = temp_db("roundtrip");
    let conn = Arc::new(Mutex::new(open(&path)));
    let threads = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .build()
        .unwrap();
    let (c, t) = (conn.clone(), threads.clone());
    let batcher: Batcher<Order, i64> = Batcher::builder(move |orders: Vec<Order>| {
        let conn = c.clone();
        let handle = t.try_submit(move || insert(&mut conn.lock().unwrap(), &orders));
        async move {
            match handle {
                Ok(h) => h
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string()),
                Err(_) => Err("the database thread is busy".to_owned()),
            }
        }
    })
    .limit(Limit::fixed(1))
    .on_failure(OnFailure::Bisect)
    .build()
    .unwrap();

    let mut receipts = Vec::new();
    for i in 0..500 {
        let quantity = if i == 250 { 0 } else { 1 + i % 5 };
        let order = Order {
            user_id: i % 1000,
            quantity,
        };
        receipts.push(batcher.submit(order).await.unwrap());
    }
    let mut ids = Vec::new();
    for (i, r) in receipts.into_iter().enumerate() {
        match r.await {
            Ok(id) => ids.push(id),
            Err(e) => {
                assert_eq!(i, 250, "only the poison row fails: {e}");
                assert!(e.to_string().contains("CHECK"), "{e}");
            }
        }
    }
    batcher.shutdown().await;
    let s = batcher.snapshot();
    assert_eq!((s.committed, s.failed), (499, 1), "{s:?}");

    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 499, "every committed row has its own id");
    let conn = conn.lock().unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 499, "the table holds exactly the committed rows");
    let bad: i64 = conn
        .query_row("SELECT count(*) FROM orders WHERE quantity <= 0", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(bad, 0);
    drop(conn);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
