//! SQLite through rusqlite, on surgepool `BlockingPool`s so that no query ever blocks an async
//! worker. SQLite allows one writer at a time: writes go to a one-thread pool that owns the
//! only write connection; reads (WAL mode lets them run beside the writer) go to a small pool
//! whose threads take connections from a stack.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rusqlite::{Connection, OpenFlags};
use surgepool::{BlockingPool, Limit, SubmitError, TaskError};

use super::{Claim, NewOrder, Storage, StoreError, StoreFuture, User, QUERY_TIMEOUT, SEEDED_USERS};

const READERS: usize = 4;
/// Orders beyond this many waiting for the writer are refused at once (503), not queued.
const WRITE_QUEUE: usize = 4096;

/// The SQLite store.
#[derive(Debug)]
pub(crate) struct SqliteStore {
    path: PathBuf,
    writer: BlockingPool,
    write_conn: Arc<Mutex<Connection>>,
    readers: BlockingPool,
    read_conns: Arc<Mutex<Vec<Connection>>>,
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(QUERY_TIMEOUT)?;
    // WAL: readers never wait for the writer. synchronous=FULL: a 201 means the order is on
    // disk, so every commit pays an fsync — the cost group commit exists to share.
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")?;
    Ok(conn)
}

fn to_store(err: rusqlite::Error) -> StoreError {
    match err {
        rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::DatabaseBusy => {
            StoreError::Timeout
        }
        other => StoreError::Database(other.to_string()),
    }
}

impl SqliteStore {
    pub(crate) fn open(path: &Path) -> anyhow::Result<SqliteStore> {
        let conn = connect(path).with_context(|| format!("opening {}", path.display()))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS users (
                 id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS orders (
                 id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, item TEXT NOT NULL,
                 quantity INTEGER NOT NULL,
                 created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
             CREATE TABLE IF NOT EXISTS confirmations (
                 order_id INTEGER PRIMARY KEY,
                 confirmed_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);",
        )
        .context("creating the schema")?;
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
             INSERT OR IGNORE INTO users (id, name, email)
             SELECT i, 'user ' || i, 'user' || i || '@example.com' FROM n",
            [SEEDED_USERS],
        )
        .context("seeding users")?;
        let writer = BlockingPool::builder()
            .limit(Limit::fixed(1))
            .queue_capacity(WRITE_QUEUE)
            .thread_name("orders-sqlite-writer")
            .build()?;
        let readers = BlockingPool::builder()
            .limit(Limit::fixed(READERS))
            .queue_capacity(READERS * 256)
            .thread_name("orders-sqlite-reader")
            .build()?;
        Ok(SqliteStore {
            path: path.to_owned(),
            writer,
            write_conn: Arc::new(Mutex::new(conn)),
            readers,
            read_conns: Arc::new(Mutex::new(Vec::new())),
        })
    }
}

/// Submits `job` with a queue deadline (shed, never run, past it) and waits for it no longer
/// than [`QUERY_TIMEOUT`].
fn run<T, F>(pool: &BlockingPool, job: F) -> StoreFuture<T>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    let handle = pool.try_submit_with_deadline(job, tokio::time::Instant::now() + QUERY_TIMEOUT);
    Box::pin(async move {
        let handle = handle.map_err(|err| match err {
            SubmitError::Full(_) | SubmitError::Closed(_) | SubmitError::Timeout(_) => {
                StoreError::Unavailable
            }
        })?;
        match tokio::time::timeout(QUERY_TIMEOUT, handle).await {
            Ok(Ok(result)) => result,
            Ok(Err(err)) => Err(task_error(&err)),
            Err(_) => Err(StoreError::Timeout),
        }
    })
}

fn task_error(err: &TaskError) -> StoreError {
    if err.is_shed() {
        StoreError::Timeout
    } else if err.is_cancelled() {
        StoreError::Unavailable
    } else {
        StoreError::Database(err.to_string())
    }
}

impl Storage for SqliteStore {
    fn get_user(&self, id: i64) -> StoreFuture<Option<User>> {
        let conns = self.read_conns.clone();
        let path = self.path.clone();
        run(&self.readers, move || {
            let taken = conns.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match taken {
                Some(conn) => conn,
                None => connect(&path).map_err(to_store)?,
            };
            let result = conn
                .prepare_cached("SELECT id, name, email FROM users WHERE id = ?1")
                .and_then(|mut stmt| {
                    let mut rows = stmt.query([id])?;
                    rows.next()?
                        .map(|row| {
                            Ok(User {
                                id: row.get(0)?,
                                name: row.get(1)?,
                                email: row.get(2)?,
                            })
                        })
                        .transpose()
                })
                .map_err(to_store);
            conns.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            result
        })
    }

    fn insert_orders(
        &self,
        orders: Vec<NewOrder>,
        claim: Option<Arc<Claim>>,
    ) -> StoreFuture<Vec<i64>> {
        let conn = self.write_conn.clone();
        run(&self.writer, move || {
            if let Some(claim) = claim {
                if !claim.start() {
                    return Err(StoreError::Abandoned);
                }
            }
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn.transaction().map_err(to_store)?;
            let mut ids = Vec::with_capacity(orders.len());
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO orders (user_id, item, quantity) VALUES (?1, ?2, ?3)",
                    )
                    .map_err(to_store)?;
                for order in &orders {
                    stmt.execute(rusqlite::params![order.user_id, order.item, order.quantity])
                        .map_err(to_store)?;
                    ids.push(tx.last_insert_rowid());
                }
            }
            tx.commit().map_err(to_store)?;
            Ok(ids)
        })
    }

    fn confirm(&self, order_id: i64) -> StoreFuture<()> {
        let conn = self.write_conn.clone();
        run(&self.writer, move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            conn.prepare_cached("INSERT OR IGNORE INTO confirmations (order_id) VALUES (?1)")
                .and_then(|mut stmt| stmt.execute([order_id]))
                .map_err(to_store)?;
            Ok(())
        })
    }

    fn max_writers(&self) -> Option<usize> {
        // One write connection: a second concurrent flush would only wait for it, and split
        // what could have been one batch in two.
        Some(1)
    }

    fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "sqlite_writer": super::pool_json(&self.writer.snapshot()),
            "sqlite_readers": super::pool_json(&self.readers.snapshot()),
        })
    }

    fn metrics(&self, out: &mut String) {
        super::pool_metrics(out, "sqlite_writer", &self.writer.snapshot());
        super::pool_metrics(out, "sqlite_readers", &self.readers.snapshot());
    }

    fn shutdown(&self, grace: std::time::Duration) {
        self.writer.shutdown_timeout(grace);
        self.readers.shutdown_timeout(grace);
    }
}
