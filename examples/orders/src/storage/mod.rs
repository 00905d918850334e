//! Storage behind one small trait, with a SQLite file (the embedded default) and a PostgreSQL
//! one. Both create their schema on start, seed users 1..=1000, and bound every query in time.

mod postgres;
mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) use postgres::PostgresStore;
pub(crate) use sqlite::SqliteStore;

/// Every query, and every wait for a connection or a worker, is bounded by this.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Users seeded at start: ids `1..=SEEDED_USERS`.
pub(crate) const SEEDED_USERS: i64 = 1000;

/// A user row.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct User {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) email: String,
}

/// An order as validated from `POST /api/orders`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewOrder {
    pub(crate) user_id: i64,
    pub(crate) item: String,
    pub(crate) quantity: i32,
}

/// Why a storage call failed.
#[derive(Debug)]
pub(crate) enum StoreError {
    /// No worker or connection was free in time, or the query ran past [`QUERY_TIMEOUT`].
    Timeout,
    /// The worker pool or connection pool is full or closed: try later.
    Unavailable,
    /// The caller gave up before the write began: nothing was written.
    Abandoned,
    /// The database said no.
    Database(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Timeout => f.write_str("database timeout"),
            StoreError::Unavailable => f.write_str("database busy"),
            StoreError::Abandoned => f.write_str("abandoned before the write began"),
            StoreError::Database(msg) => write!(f, "database error: {msg}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// A boxed storage future.
pub(crate) type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// What the routes need from a database.
pub(crate) trait Storage: Send + Sync + 'static {
    /// One user, `None` when there is no such id.
    fn get_user(&self, id: i64) -> StoreFuture<Option<User>>;
    /// Inserts `orders` in one transaction and returns their ids, in order. When `claim` is
    /// given, the write begins only if [`Claim::start`] wins; otherwise nothing is written
    /// and the answer is [`StoreError::Abandoned`].
    fn insert_orders(
        &self,
        orders: Vec<NewOrder>,
        claim: Option<Arc<Claim>>,
    ) -> StoreFuture<Vec<i64>>;
    /// Records that `order_id`'s confirmation job ran: one `confirmations` row per order,
    /// keyed by the order id, so a redelivered job changes nothing.
    fn confirm(&self, order_id: i64) -> StoreFuture<()>;
    /// How many writes can run at once (`None`: let the batcher's adaptive limit find out).
    fn max_writers(&self) -> Option<usize>;
    /// The storage's pools, as JSON for `/debug/pools`.
    fn snapshot(&self) -> serde_json::Value;
    /// Prometheus lines for the storage's pools.
    fn metrics(&self, out: &mut String);
    /// Stops the storage's pools after the in-flight work finished (bounded by `grace`).
    fn shutdown(&self, grace: Duration);
}

/// Opens the storage `--database` names.
pub(crate) async fn open(db: &crate::config::Database) -> anyhow::Result<Arc<dyn Storage>> {
    Ok(match db {
        crate::config::Database::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
        crate::config::Database::Postgres(url) => Arc::new(PostgresStore::open(url).await?),
    })
}

/// Decides, exactly once, whether a write begins or is abandoned: the request that waits for
/// it and the worker about to run it race, and whichever comes first wins. This is what lets
/// a 504 say "nothing was written" when the claim was abandoned, and "outcome unknown" only
/// when the write had already begun.
#[derive(Debug, Default)]
pub(crate) struct Claim(AtomicU8);

const PENDING: u8 = 0;
const STARTED: u8 = 1;
const ABANDONED: u8 = 2;

impl Claim {
    /// Called by the writer before it begins: `true` when the write may go ahead.
    pub(crate) fn start(&self) -> bool {
        self.0
            .compare_exchange(PENDING, STARTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Called by the waiter when it gives up: `true` when the write will never begin.
    pub(crate) fn abandon(&self) -> bool {
        match self
            .0
            .compare_exchange(PENDING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == ABANDONED,
        }
    }
}

/// Prometheus lines for one surgepool snapshot.
pub(crate) fn pool_metrics(out: &mut String, pool: &str, s: &surgepool::Snapshot) {
    use std::fmt::Write as _;
    for (name, v) in [
        ("submitted", s.submitted),
        ("rejected", s.rejected),
        ("accepted", s.accepted),
        ("completed", s.completed),
        ("panicked", s.panicked),
        ("cancelled", s.cancelled),
        ("shed", s.shed),
    ] {
        let _ = writeln!(out, "orders_pool_{name}_total{{pool=\"{pool}\"}} {v}");
    }
    for (name, v) in [
        ("queued", s.queued),
        ("running", s.running),
        ("workers", s.workers),
        ("limit", s.limit),
    ] {
        let _ = writeln!(out, "orders_pool_{name}{{pool=\"{pool}\"}} {v}");
    }
}

/// One surgepool snapshot as JSON.
pub(crate) fn pool_json(s: &surgepool::Snapshot) -> serde_json::Value {
    serde_json::json!({
        "submitted": s.submitted, "rejected": s.rejected, "accepted": s.accepted,
        "completed": s.completed, "panicked": s.panicked, "cancelled": s.cancelled,
        "shed": s.shed, "queued": s.queued, "running": s.running,
        "workers": s.workers, "limit": s.limit,
    })
}
