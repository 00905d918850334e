//! SQLite: a file in a temporary directory, WAL and `synchronous=FULL` (every commit syncs),
//! one writer connection driven from a `BlockingPool` thread (SQLite has one writer at a
//! time, so one thread: more would only wait on its lock).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use rusqlite::{params, params_from_iter, Connection};
use surgepool::{BlockingPool, Limit};

use super::Row;

/// The SQLite half of the experiment.
#[derive(Clone)]
pub(crate) struct Sqlite {
    conn: Arc<Mutex<Connection>>,
    thread: BlockingPool,
    dir: PathBuf,
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite").field("dir", &self.dir).finish()
    }
}

impl Sqlite {
    pub(crate) fn open() -> anyhow::Result<Sqlite> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "surgepool-lab-batch-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let conn = Connection::open(dir.join("orders.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,
                                  item TEXT NOT NULL, quantity INTEGER NOT NULL)",
        )?;
        let thread = BlockingPool::builder()
            .limit(Limit::fixed(1))
            .queue_capacity(1 << 20)
            .build()?;
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
            thread,
            dir,
        })
    }

    /// Runs `f` with the connection on the database thread.
    pub(crate) async fn with<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let conn = self.conn.clone();
        let handle = self
            .thread
            .submit_timeout(
                move || {
                    let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                    f(&mut conn)
                },
                std::time::Duration::from_secs(30),
            )
            .map_err(|e| anyhow::anyhow!("database thread: {e}"))?;
        Ok(handle.await??)
    }

    pub(crate) async fn reset(&self) -> anyhow::Result<()> {
        self.with(|c| c.execute_batch("DELETE FROM orders")).await
    }

    pub(crate) async fn count(&self) -> anyhow::Result<u64> {
        self.with(|c| c.query_row("SELECT count(*) FROM orders", [], |r| r.get::<_, i64>(0)))
            .await
            .map(|n| n.max(0) as u64)
    }

    /// One autocommit INSERT per row; returns each row's commit time, in seconds.
    pub(crate) async fn per_row(&self, rows: Arc<Vec<Row>>) -> anyhow::Result<Vec<f64>> {
        self.with(move |c| {
            let mut stmt = c.prepare_cached(
                "INSERT INTO orders (user_id, item, quantity) VALUES (?1, ?2, ?3)",
            )?;
            let mut times = Vec::with_capacity(rows.len());
            for r in rows.iter() {
                let t = Instant::now();
                stmt.execute(params![r.user_id, r.item, r.quantity])?;
                times.push(t.elapsed().as_secs_f64());
            }
            Ok(times)
        })
        .await
    }

    /// The seed's shape: `n` rows per transaction, one prepared INSERT per row. Returns each
    /// transaction's time and size.
    pub(crate) async fn tx_batch(
        &self,
        rows: Arc<Vec<Row>>,
        n: usize,
    ) -> anyhow::Result<Vec<(f64, usize)>> {
        self.with(move |c| {
            let mut out = Vec::new();
            for chunk in rows.chunks(n) {
                let t = Instant::now();
                let tx = c.transaction()?;
                {
                    let mut stmt = tx.prepare_cached(
                        "INSERT INTO orders (user_id, item, quantity) VALUES (?1, ?2, ?3)",
                    )?;
                    for r in chunk {
                        stmt.execute(params![r.user_id, r.item, r.quantity])?;
                    }
                }
                tx.commit()?;
                out.push((t.elapsed().as_secs_f64(), chunk.len()));
            }
            Ok(out)
        })
        .await
    }

    /// Multi-row `VALUES`, `n` rows per statement and transaction.
    pub(crate) async fn multi_row(
        &self,
        rows: Arc<Vec<Row>>,
        n: usize,
    ) -> anyhow::Result<Vec<(f64, usize)>> {
        self.with(move |c| {
            let mut out = Vec::new();
            for chunk in rows.chunks(n) {
                let t = Instant::now();
                insert_values(c, chunk)?;
                out.push((t.elapsed().as_secs_f64(), chunk.len()));
            }
            Ok(out)
        })
        .await
    }

    /// The batcher's flush: one multi-row INSERT in one transaction, ids in order.
    pub(crate) async fn flush(&self, rows: Vec<Row>) -> anyhow::Result<Vec<i64>> {
        self.with(move |c| insert_values(c, &rows)).await
    }

    pub(crate) fn cleanup(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One transaction, one `INSERT ... VALUES (..), (..) RETURNING id` (SQLite ≥ 3.35); rows
/// are inserted, and their ids returned, in order. Chunks of 500 rows keep the statement
/// under SQLite's limit on bound parameters.
fn insert_values(c: &mut Connection, rows: &[Row]) -> rusqlite::Result<Vec<i64>> {
    let tx = c.transaction()?;
    let mut ids = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(500) {
        let mut sql = String::from("INSERT INTO orders (user_id, item, quantity) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str("(?,?,?)");
        }
        sql.push_str(" RETURNING id");
        let mut stmt = tx.prepare_cached(&sql)?;
        let values = chunk.iter().flat_map(|r| {
            [
                rusqlite::types::Value::Integer(r.user_id),
                rusqlite::types::Value::Text(r.item.clone()),
                rusqlite::types::Value::Integer(i64::from(r.quantity)),
            ]
        });
        let mut rows = stmt.query(params_from_iter(values))?;
        let mut chunk_ids = Vec::with_capacity(chunk.len());
        while let Some(row) = rows.next()? {
            chunk_ids.push(row.get::<_, i64>(0)?);
        }
        // RETURNING's order is unspecified; rowids are assigned in VALUES order by the one
        // writer, so ascending ids are the rows' order.
        chunk_ids.sort_unstable();
        ids.extend(chunk_ids);
    }
    tx.commit()?;
    Ok(ids)
}
