//! Seed 001's "~50× faster" batched inserts, on real databases (issue 12).
//!
//! The seed batches a slice the caller already holds; a service receives one row per
//! request. So the experiment writes the same N rows on SQLite and PostgreSQL:
//! * as the seed does: `per_row_autocommit`, `tx_batch_<N>` (N rows per transaction, a
//!   prepared statement, one round trip per row), `tx_batch_pipelined_<N>` (the same with
//!   the row INSERTs pipelined; PostgreSQL), `multi_row_<N>` (one multi-row statement),
//!   `copy` (PostgreSQL `COPY BINARY`);
//! * as a service would: rows arriving one by one, open loop, faster than per-row writes can
//!   take, through `surgepool::batch::Batcher` with its defaults (`batcher`) and with fixed
//!   batch sizes (`batcher_fixed_<N>`), and at a light load of one row every 10 ms
//!   (`batcher_light`).
//!
//! Every strategy starts from an empty table and counts its rows at the end, so nothing
//! lost or duplicated can hide. Item latency: for the closed-loop strategies, the time of
//! the unit (row or transaction) that wrote the item; for the batcher, from the item's
//! intended arrival to its commit.

mod measure;
mod output;
mod postgres;
mod sqlite;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use surgepool::batch::{Batcher, BatcherBuilder};

use measure::{sizes, Latencies, StrategyResult};
use postgres::Postgres;
use sqlite::Sqlite;

/// The default PostgreSQL: the local server, database `test`.
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test?connect_timeout=5";

/// Which databases to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DbChoice {
    Sqlite,
    Postgres,
    /// Both; PostgreSQL is skipped with a message when it is not reachable.
    Both,
}

/// `surgepool-lab batch`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Databases to run.
    #[arg(long, value_enum, default_value = "both")]
    db: DbChoice,
    /// PostgreSQL connection URL.
    #[arg(long, default_value = DEFAULT_POSTGRES_URL)]
    postgres_url: String,
    /// Rows each strategy writes.
    #[arg(long, default_value_t = 3000)]
    items: usize,
    /// Rows per transaction of `tx_batch_<N>` and per statement of `multi_row_<N>`.
    #[arg(long, default_value_t = 1000)]
    tx_size: usize,
    /// Batch sizes of the `batcher_fixed_<N>` sweep, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    sweep: Vec<usize>,
    /// Arrival rate of the open-loop strategies, rows/s; default: 20 × the rows/s of
    /// `per_row_autocommit` on the same database.
    #[arg(long)]
    rate: Option<f64>,
    /// Rows of `batcher_light` (one every 10 ms).
    #[arg(long, default_value_t = 100)]
    light_items: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an HTML report (table and charts) into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// One order row.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) user_id: i64,
    pub(crate) item: String,
    pub(crate) quantity: i32,
}

fn rows(n: usize) -> Arc<Vec<Row>> {
    const ITEMS: [&str; 4] = ["book", "pen", "lamp", "mug"];
    Arc::new(
        (0..n)
            .map(|i| Row {
                user_id: (i % 1000) as i64 + 1,
                item: ITEMS[i % ITEMS.len()].to_owned(),
                quantity: (i % 5) as i32 + 1,
            })
            .collect(),
    )
}

/// The database under test.
#[derive(Debug, Clone)]
enum Db {
    Sqlite(Sqlite),
    Postgres(Arc<Postgres>),
}

impl Db {
    fn name(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    async fn reset(&self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(d) => d.reset().await,
            Db::Postgres(d) => d.reset().await,
        }
    }

    async fn count(&self) -> anyhow::Result<u64> {
        match self {
            Db::Sqlite(d) => d.count().await,
            Db::Postgres(d) => d.count().await,
        }
    }

    /// A batcher builder whose flush writes one multi-row INSERT.
    fn batcher(&self) -> BatcherBuilder<Row, i64> {
        let db = self.clone();
        Batcher::builder(move |rows: Vec<Row>| {
            let db = db.clone();
            async move {
                let ids = match &db {
                    Db::Sqlite(d) => d.flush(rows).await,
                    Db::Postgres(d) => d.flush(rows).await,
                };
                ids.map_err(|e| format!("{e:#}"))
            }
        })
    }
}

/// Runs the experiment.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.items > 0, "--items must be at least 1");
    anyhow::ensure!(args.tx_size > 0, "--tx-size must be at least 1");
    anyhow::ensure!(
        args.sweep.iter().all(|n| *n > 0),
        "--sweep sizes must be at least 1"
    );
    if let Some(rate) = args.rate {
        anyhow::ensure!(rate.is_finite() && rate > 0.0, "--rate must be positive");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let results = runtime.block_on(run_all(&args))?;
    output::print(&results);
    if let Some(path) = &args.json {
        output::write_json(path, &args, &results)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(dir) = &args.report {
        let path = output::write_report(dir, &results)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

async fn run_all(args: &Args) -> anyhow::Result<Vec<StrategyResult>> {
    let mut results = Vec::new();
    if args.db != DbChoice::Postgres {
        let sqlite = Sqlite::open()?;
        let outcome = run_db(args, &Db::Sqlite(sqlite.clone()), &mut results).await;
        sqlite.cleanup();
        outcome?;
    }
    if args.db != DbChoice::Sqlite {
        match Postgres::connect(&args.postgres_url).await {
            Ok(pg) => {
                let pg = Arc::new(pg);
                let outcome = run_db(args, &Db::Postgres(pg.clone()), &mut results).await;
                pg.drop_table().await;
                outcome?;
            }
            Err(e) if args.db == DbChoice::Both => {
                eprintln!(
                    "postgres: skipped, not reachable at {}: {e:#}",
                    args.postgres_url
                );
            }
            Err(e) => return Err(e),
        }
    }
    Ok(results)
}

fn progress(db: &str, len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>8} {bar:30.cyan/blue} {pos}/{len} rows  {msg}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar.set_prefix(db.to_owned());
    bar
}

async fn run_db(args: &Args, db: &Db, out: &mut Vec<StrategyResult>) -> anyhow::Result<()> {
    let rows = rows(args.items);
    let n = args.items as u64;
    let bar = progress(db.name(), n);
    let mut strategies: Vec<String> = vec![
        "per_row_autocommit".into(),
        format!("tx_batch_{}", args.tx_size),
    ];
    if matches!(db, Db::Postgres(_)) {
        strategies.push(format!("tx_batch_pipelined_{}", args.tx_size));
    }
    strategies.push(format!("multi_row_{}", args.tx_size));
    if matches!(db, Db::Postgres(_)) {
        strategies.push("copy".into());
    }
    let mut per_row_rps = 0.0;
    for name in strategies {
        bar.set_message(name.clone());
        bar.set_position(0);
        db.reset().await?;
        let started = std::time::Instant::now();
        let units = closed_loop(db, &name, rows.clone(), args.tx_size).await?;
        let elapsed = started.elapsed().as_secs_f64();
        let mut lat = Latencies::new();
        let mut unit_sizes = Vec::new();
        for (secs, size) in &units {
            lat.record(*secs, *size as u64);
            unit_sizes.push(*size);
        }
        let rps = n as f64 / elapsed.max(1e-9);
        if name == "per_row_autocommit" {
            per_row_rps = rps;
        }
        bar.set_position(n);
        let rows_in_table = db.count().await?;
        out.push(StrategyResult {
            name,
            db: db.name(),
            items: n,
            committed: n,
            failed: 0,
            lost: n.saturating_sub(rows_in_table),
            rows_in_table,
            rows_per_s: rps,
            item_latency_ms: lat.summary(),
            batch_size: sizes(&unit_sizes),
            offered_rps: 0.0,
        });
    }

    let rate = args
        .rate
        .unwrap_or_else(|| (20.0 * per_row_rps).clamp(1_000.0, 200_000.0));
    // (name, batcher, rows, arrival rate)
    type OpenLoop = (String, BatcherBuilder<Row, i64>, Arc<Vec<Row>>, f64);
    let mut open: Vec<OpenLoop> = Vec::new();
    open.push(("batcher".into(), db.batcher(), rows.clone(), rate));
    for size in &args.sweep {
        // A fixed-size batcher waits for a full batch (a linger as long as the whole run
        // is only there to flush the last, partial one).
        let builder = db
            .batcher()
            .max_batch_size(*size)
            .max_linger(Duration::from_secs(1));
        open.push((format!("batcher_fixed_{size}"), builder, rows.clone(), rate));
    }
    open.push((
        "batcher_light".into(),
        db.batcher(),
        self::rows(args.light_items.max(1)),
        100.0,
    ));
    for (name, builder, rows, rate) in open {
        bar.set_message(format!("{name} at {rate:.0} rows/s"));
        bar.set_position(0);
        bar.set_length(rows.len() as u64);
        db.reset().await?;
        let batcher = builder.build()?;
        let seen = bar.clone();
        let r = measure::drive(batcher, rows.clone(), rate, move || seen.inc(1)).await;
        if let Some(e) = &r.first_error {
            eprintln!("{} {name}: first error: {e}", db.name());
        }
        let rows_in_table = db.count().await?;
        let items = rows.len() as u64;
        out.push(StrategyResult {
            name,
            db: db.name(),
            items,
            committed: r.committed,
            failed: r.failed,
            lost: items.saturating_sub(r.committed + r.failed),
            rows_in_table,
            rows_per_s: r.rows_per_s,
            item_latency_ms: r.latency,
            batch_size: r.batch_size,
            offered_rps: rate,
        });
    }
    bar.finish_and_clear();
    Ok(())
}

/// Runs a closed-loop strategy: (seconds, rows) of each unit it wrote.
async fn closed_loop(
    db: &Db,
    name: &str,
    rows: Arc<Vec<Row>>,
    n: usize,
) -> anyhow::Result<Vec<(f64, usize)>> {
    let ones = |times: Vec<f64>| times.into_iter().map(|t| (t, 1)).collect();
    match db {
        Db::Sqlite(d) => match name {
            "per_row_autocommit" => d.per_row(rows).await.map(ones),
            _ if name.starts_with("tx_batch_") => d.tx_batch(rows, n).await,
            _ => d.multi_row(rows, n).await,
        },
        Db::Postgres(d) => match name {
            "per_row_autocommit" => d.per_row(&rows).await.map(ones),
            "copy" => Ok(vec![(d.copy(&rows).await?, rows.len())]),
            _ if name.starts_with("tx_batch_pipelined_") => d.tx_batch(&rows, n, true).await,
            _ if name.starts_with("tx_batch_") => d.tx_batch(&rows, n, false).await,
            _ => d.multi_row(&rows, n).await,
        },
    }
}
