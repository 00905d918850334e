//! PostgreSQL through tokio-postgres and a deadpool-postgres connection pool. deadpool has no
//! timeouts by default, so a dead database would park every request forever: wait, create and
//! recycle are all bounded here, and each connection carries a `statement_timeout`. Statements
//! are prepared once per connection (`prepare_cached`); a batch of orders is one `INSERT ...
//! SELECT FROM UNNEST(...)` round trip, whatever its size.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::{Claim, NewOrder, Storage, StoreError, StoreFuture, User, QUERY_TIMEOUT, SEEDED_USERS};

const CONNECTIONS: usize = 16;

/// The PostgreSQL store.
#[derive(Debug)]
pub(crate) struct PostgresStore {
    pool: Pool,
}

fn db_err(err: tokio_postgres::Error) -> StoreError {
    if err.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) {
        StoreError::Timeout
    } else {
        StoreError::Database(err.to_string())
    }
}

fn pool_err(err: PoolError) -> StoreError {
    match err {
        PoolError::Timeout(_) => StoreError::Timeout,
        PoolError::Closed => StoreError::Unavailable,
        PoolError::Backend(err) => db_err(err),
        other => StoreError::Database(other.to_string()),
    }
}

impl PostgresStore {
    pub(crate) async fn open(url: &str) -> anyhow::Result<PostgresStore> {
        let mut config: tokio_postgres::Config = url.parse().context("parsing --database")?;
        // The server cancels any statement past the timeout, so a stuck query frees its
        // connection even when the client-side timeout has already answered 504.
        let options = format!(
            "{} -c statement_timeout={}",
            config.get_options().unwrap_or(""),
            QUERY_TIMEOUT.as_millis()
        );
        config.options(options.trim());
        config.connect_timeout(QUERY_TIMEOUT);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(CONNECTIONS)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(QUERY_TIMEOUT))
            .create_timeout(Some(QUERY_TIMEOUT))
            .recycle_timeout(Some(Duration::from_secs(1)))
            .build()
            .context("building the PostgreSQL pool")?;
        let client = pool.get().await.context("connecting to PostgreSQL")?;
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS users (
                     id BIGINT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS orders (
                     id BIGSERIAL PRIMARY KEY, user_id BIGINT NOT NULL, item TEXT NOT NULL,
                     quantity INT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now());
                 CREATE TABLE IF NOT EXISTS confirmations (
                     order_id BIGINT PRIMARY KEY,
                     confirmed_at TIMESTAMPTZ NOT NULL DEFAULT now());",
            )
            .await
            .context("creating the schema")?;
        client
            .execute(
                "INSERT INTO users (id, name, email)
                 SELECT g, 'user ' || g, 'user' || g || '@example.com'
                 FROM generate_series(1, $1::int8) AS g ON CONFLICT (id) DO NOTHING",
                &[&SEEDED_USERS],
            )
            .await
            .context("seeding users")?;
        drop(client);
        Ok(PostgresStore { pool })
    }
}

impl Storage for PostgresStore {
    fn get_user(&self, id: i64) -> StoreFuture<Option<User>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let query = async {
                let client = pool.get().await.map_err(pool_err)?;
                let stmt = client
                    .prepare_cached("SELECT id, name, email FROM users WHERE id = $1")
                    .await
                    .map_err(db_err)?;
                let row = client.query_opt(&stmt, &[&id]).await.map_err(db_err)?;
                Ok(row.map(|row| User {
                    id: row.get(0),
                    name: row.get(1),
                    email: row.get(2),
                }))
            };
            tokio::time::timeout(QUERY_TIMEOUT, query)
                .await
                .unwrap_or(Err(StoreError::Timeout))
        })
    }

    fn insert_orders(
        &self,
        orders: Vec<NewOrder>,
        claim: Option<Arc<Claim>>,
    ) -> StoreFuture<Vec<i64>> {
        let pool = self.pool.clone();
        // Spawned, so that a caller that stops waiting cannot cancel a commit half-way: the
        // outcome is then decided by the database alone, and the claim tells the caller
        // whether the write had begun.
        let work = async move {
            let client = pool.get().await.map_err(pool_err)?;
            if let Some(claim) = claim {
                if !claim.start() {
                    return Err(StoreError::Abandoned);
                }
            }
            // `ORDER BY n` makes the sequence hand out ids in input order, so the sorted ids
            // that RETURNING gives back (in no promised order) map to the orders one to one.
            let stmt = client
                .prepare_cached(
                    "INSERT INTO orders (user_id, item, quantity)
                     SELECT u, i, q FROM UNNEST($1::int8[], $2::text[], $3::int4[])
                         WITH ORDINALITY AS t(u, i, q, n)
                     ORDER BY n RETURNING id",
                )
                .await
                .map_err(db_err)?;
            let users: Vec<i64> = orders.iter().map(|o| o.user_id).collect();
            let items: Vec<&str> = orders.iter().map(|o| o.item.as_str()).collect();
            let quantities: Vec<i32> = orders.iter().map(|o| o.quantity).collect();
            let rows = client
                .query(&stmt, &[&users, &items, &quantities])
                .await
                .map_err(db_err)?;
            let mut ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
            ids.sort_unstable();
            Ok(ids)
        };
        // Bounded on this side too: the pool's wait and the server's `statement_timeout`
        // bound a live server, but a connection whose peer vanished without a reset would
        // wait for the kernel's keepalive (hours), holding a flush. Past the bound the
        // outcome is unknown (the statement may have reached the server), which the claim
        // and `StoreError::Timeout` tell the caller.
        let bound = 2 * QUERY_TIMEOUT + Duration::from_secs(1);
        let task = tokio::spawn(async move {
            tokio::time::timeout(bound, work)
                .await
                .unwrap_or(Err(StoreError::Timeout))
        });
        Box::pin(async move {
            match task.await {
                Ok(result) => result,
                Err(err) => Err(StoreError::Database(err.to_string())),
            }
        })
    }

    fn confirm(&self, order_id: i64) -> StoreFuture<()> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let query = async {
                let client = pool.get().await.map_err(pool_err)?;
                let stmt = client
                    .prepare_cached(
                        "INSERT INTO confirmations (order_id) VALUES ($1)
                         ON CONFLICT (order_id) DO NOTHING",
                    )
                    .await
                    .map_err(db_err)?;
                client.execute(&stmt, &[&order_id]).await.map_err(db_err)?;
                Ok(())
            };
            tokio::time::timeout(QUERY_TIMEOUT, query)
                .await
                .unwrap_or(Err(StoreError::Timeout))
        })
    }

    fn max_writers(&self) -> Option<usize> {
        None
    }

    fn snapshot(&self) -> serde_json::Value {
        let s = self.pool.status();
        serde_json::json!({"postgres": {
            "max_size": s.max_size, "size": s.size, "available": s.available, "waiting": s.waiting,
        }})
    }

    fn metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let s = self.pool.status();
        let _ = writeln!(out, "orders_pg_connections {}", s.size);
        let _ = writeln!(out, "orders_pg_connections_available {}", s.available);
        let _ = writeln!(out, "orders_pg_waiting {}", s.waiting);
    }

    fn shutdown(&self, _grace: Duration) {
        self.pool.close();
    }
}
