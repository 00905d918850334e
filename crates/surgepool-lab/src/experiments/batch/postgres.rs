//! PostgreSQL: tokio-postgres through a deadpool connection pool (with wait, create and
//! recycle timeouts), prepared statements, and the four ways of writing many rows.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Timeouts};
use futures_util::future::try_join_all;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::NoTls;

use super::Row;

/// Connections in the pool: the batcher's flushes run on up to this many at once.
pub(crate) const POOL_SIZE: usize = 8;

const INSERT_ONE: &str =
    "INSERT INTO surgepool_lab_batch (user_id, item, quantity) VALUES ($1, $2, $3)";
const INSERT_UNNEST: &str = "INSERT INTO surgepool_lab_batch (user_id, item, quantity)
     SELECT u, i, q FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::INT[]) WITH ORDINALITY AS t(u, i, q, n)
     ORDER BY n RETURNING id";

/// The PostgreSQL half of the experiment.
#[derive(Clone)]
pub(crate) struct Postgres {
    pool: Pool,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").finish_non_exhaustive()
    }
}

fn db_error(e: tokio_postgres::Error) -> anyhow::Error {
    // `Display` of a server error is only "db error": keep the server's own message.
    match e.as_db_error() {
        Some(db) => anyhow::anyhow!("{db}"),
        None => anyhow::anyhow!("{e}"),
    }
}

impl Postgres {
    /// Connects (one probe connection, so an unreachable server is reported at once) and
    /// creates the table.
    pub(crate) async fn connect(url: &str) -> anyhow::Result<Postgres> {
        let config: tokio_postgres::Config = url.parse().context("bad --postgres-url")?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let timeouts = Timeouts {
            wait: Some(Duration::from_secs(10)),
            create: Some(Duration::from_secs(5)),
            recycle: Some(Duration::from_secs(5)),
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .timeouts(timeouts)
            .build()
            .context("building the connection pool")?;
        let client = pool.get().await.context("connecting to PostgreSQL")?;
        client
            .batch_execute(
                "DROP TABLE IF EXISTS surgepool_lab_batch;
                 CREATE TABLE surgepool_lab_batch (id BIGSERIAL PRIMARY KEY,
                     user_id BIGINT NOT NULL, item TEXT NOT NULL, quantity INT NOT NULL)",
            )
            .await
            .map_err(db_error)?;
        Ok(Postgres { pool })
    }

    pub(crate) async fn reset(&self) -> anyhow::Result<()> {
        let client = self.pool.get().await?;
        client
            .batch_execute("TRUNCATE surgepool_lab_batch")
            .await
            .map_err(db_error)
    }

    pub(crate) async fn count(&self) -> anyhow::Result<u64> {
        let client = self.pool.get().await?;
        let n: i64 = client
            .query_one("SELECT count(*) FROM surgepool_lab_batch", &[])
            .await
            .map_err(db_error)?
            .get(0);
        Ok(n.max(0) as u64)
    }

    pub(crate) async fn drop_table(&self) {
        if let Ok(client) = self.pool.get().await {
            let _ = client
                .batch_execute("DROP TABLE IF EXISTS surgepool_lab_batch")
                .await;
        }
    }

    /// One autocommit INSERT per row; each row's commit time, in seconds.
    pub(crate) async fn per_row(&self, rows: &[Row]) -> anyhow::Result<Vec<f64>> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(INSERT_ONE).await.map_err(db_error)?;
        let mut times = Vec::with_capacity(rows.len());
        for r in rows {
            let t = Instant::now();
            client
                .execute(&stmt, &[&r.user_id, &r.item, &r.quantity])
                .await
                .map_err(db_error)?;
            times.push(t.elapsed().as_secs_f64());
        }
        Ok(times)
    }

    /// `n` rows per transaction with a prepared INSERT per row: awaited one by one (the
    /// seed's shape: one round trip per row), or all sent at once (`pipelined`: tokio-postgres
    /// pipelines concurrent queries on one connection).
    pub(crate) async fn tx_batch(
        &self,
        rows: &[Row],
        n: usize,
        pipelined: bool,
    ) -> anyhow::Result<Vec<(f64, usize)>> {
        let mut client = self.pool.get().await?;
        let stmt = client.prepare_cached(INSERT_ONE).await.map_err(db_error)?;
        let mut out = Vec::new();
        for chunk in rows.chunks(n) {
            let t = Instant::now();
            let tx = client.transaction().await.map_err(db_error)?;
            if pipelined {
                let (tx, stmt) = (&tx, &stmt);
                try_join_all(chunk.iter().map(|r| async move {
                    tx.execute(stmt, &[&r.user_id, &r.item, &r.quantity]).await
                }))
                .await
                .map_err(db_error)?;
            } else {
                for r in chunk {
                    tx.execute(&stmt, &[&r.user_id, &r.item, &r.quantity])
                        .await
                        .map_err(db_error)?;
                }
            }
            tx.commit().await.map_err(db_error)?;
            out.push((t.elapsed().as_secs_f64(), chunk.len()));
        }
        Ok(out)
    }

    /// `INSERT ... SELECT FROM UNNEST(arrays)`, `n` rows per statement (autocommit: one
    /// statement is one transaction).
    pub(crate) async fn multi_row(
        &self,
        rows: &[Row],
        n: usize,
    ) -> anyhow::Result<Vec<(f64, usize)>> {
        let mut out = Vec::new();
        for chunk in rows.chunks(n) {
            let t = Instant::now();
            self.flush(chunk.to_vec()).await?;
            out.push((t.elapsed().as_secs_f64(), chunk.len()));
        }
        Ok(out)
    }

    /// `COPY ... FROM STDIN (FORMAT binary)`, all rows in one COPY.
    pub(crate) async fn copy(&self, rows: &[Row]) -> anyhow::Result<f64> {
        let client = self.pool.get().await?;
        let t = Instant::now();
        let sink = client
            .copy_in(
                "COPY surgepool_lab_batch (user_id, item, quantity) FROM STDIN (FORMAT binary)",
            )
            .await
            .map_err(db_error)?;
        let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::TEXT, Type::INT4]);
        tokio::pin!(writer);
        for r in rows {
            writer
                .as_mut()
                .write(&[&r.user_id, &r.item, &r.quantity])
                .await
                .map_err(db_error)?;
        }
        writer.finish().await.map_err(db_error)?;
        Ok(t.elapsed().as_secs_f64())
    }

    /// The batcher's flush: one UNNEST INSERT (one transaction), ids in the rows' order.
    pub(crate) async fn flush(&self, rows: Vec<Row>) -> anyhow::Result<Vec<i64>> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(INSERT_UNNEST)
            .await
            .map_err(db_error)?;
        let users: Vec<i64> = rows.iter().map(|r| r.user_id).collect();
        let items: Vec<&str> = rows.iter().map(|r| r.item.as_str()).collect();
        let quantities: Vec<i32> = rows.iter().map(|r| r.quantity).collect();
        let ids = client
            .query(&stmt, &[&users, &items, &quantities])
            .await
            .map_err(db_error)?;
        Ok(ids.iter().map(|r| r.get::<_, i64>(0)).collect())
    }
}
