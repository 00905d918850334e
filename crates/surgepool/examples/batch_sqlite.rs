//! Group commit into SQLite: 2,000 concurrent "requests" each insert one order, and the
//! `Batcher` turns them into a handful of transactions. Each caller still learns *its* row
//! id, after *its* batch committed; a bad row fails alone (bisection).
//!
//! Run: `cargo run --release -p surgepool --example batch_sqlite`

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::{params, Connection};
use surgepool::batch::{Batcher, OnFailure};
use surgepool::{BlockingPool, Limit};

#[derive(Clone, Debug)]
struct Order {
    user_id: i64,
    quantity: i64,
}

/// One transaction per batch: the commit (an fsync with `synchronous=FULL`) is paid once for
/// the whole batch, which is where the seed's "50× faster" comes from.
fn insert(conn: &mut Connection, orders: &[Order]) -> rusqlite::Result<Vec<i64>> {
    let tx = conn.transaction()?;
    let mut ids = Vec::with_capacity(orders.len());
    {
        let mut stmt =
            tx.prepare_cached("INSERT INTO orders (user_id, quantity) VALUES (?1, ?2)")?;
        for order in orders {
            stmt.execute(params![order.user_id, order.quantity])?;
            ids.push(tx.last_insert_rowid());
        }
    }
    tx.commit()?;
    Ok(ids)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("surgepool-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let conn = Connection::open(dir.join("orders.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,
                              quantity INTEGER NOT NULL CHECK (quantity > 0))",
    )?;
    let conn = Arc::new(Mutex::new(conn));

    // SQLite calls block: they run on one OS thread (SQLite has one writer), never on the
    // async workers.
    let db_thread = BlockingPool::builder().limit(Limit::fixed(1)).build()?;
    let batcher: Batcher<Order, i64> = Batcher::builder(move |orders: Vec<Order>| {
        let conn = Arc::clone(&conn);
        let job = db_thread.try_submit(move || insert(&mut conn.lock().unwrap(), &orders));
        async move {
            match job {
                Ok(handle) => handle
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string()),
                Err(_) => Err("the database thread is busy".to_owned()),
            }
        }
    })
    .limit(Limit::fixed(1)) // one writer: one flush at a time
    .on_failure(OnFailure::Bisect) // sound here: a flush is one transaction
    .build()?;

    let started = Instant::now();
    let mut requests = Vec::new();
    for i in 0..2_000i64 {
        let batcher = batcher.clone();
        requests.push(tokio::spawn(async move {
            // Order 1234 is invalid (quantity 0): only it fails.
            let order = Order {
                user_id: i % 1000,
                quantity: if i == 1234 { 0 } else { 1 },
            };
            match batcher.try_submit(order) {
                Ok(receipt) => receipt.await.map_err(|e| e.to_string()),
                Err(full) => Err(format!("503: {full}")),
            }
        }));
    }
    let (mut ok, mut failed) = (0, 0);
    for request in requests {
        match request.await? {
            Ok(_id) => ok += 1,
            Err(_) => failed += 1,
        }
    }
    batcher.shutdown().await;
    let s = batcher.snapshot();
    println!(
        "{ok} committed, {failed} failed in {:?}: {} flushes, mean batch {:.1} items",
        started.elapsed(),
        s.flushes,
        s.batch_size.mean
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
