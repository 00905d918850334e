//! `--redis-url`: every order that got a 201 has its confirmation job sent through
//! `surgepool_redis::Overflow` (local pool, else the stream), and `orders worker` drains the
//! stream into the `confirmations` table. Against a private redis-server (skipped with a
//! message when it is not installed, failed under CI=true).

mod support;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;
use surgepool_redis::server::RedisServer;

const ORDER: &str = r#"{"user_id": 1, "item": "book", "quantity": 2}"#;
/// Orders posted per phase.
const ORDERS: usize = 24;
/// The longest the worker may take to confirm everything (a bound, not a measurement).
const CONFIRM_LIMIT: Duration = Duration::from_secs(60);

/// Posts `ORDERS` orders at once; returns the ids that got 201.
async fn post_orders(p: &Proc) -> BTreeSet<i64> {
    let c = client();
    let url = p.url("/api/orders");
    let posts: Vec<_> = (0..ORDERS)
        .map(|_| {
            let c = c.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let r = c
                    .post(url)
                    .header("content-type", "application/json")
                    .body(ORDER)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                r.json::<serde_json::Value>().await.unwrap()["id"]
                    .as_i64()
                    .unwrap()
            })
        })
        .collect();
    let mut ids = BTreeSet::new();
    for post in posts {
        ids.insert(post.await.unwrap());
    }
    ids
}

/// The database both processes use.
enum Db<'a> {
    Sqlite(&'a TempDir),
    Postgres(&'a Pg),
}

impl Db<'_> {
    fn url(&self) -> String {
        match self {
            Db::Sqlite(dir) => format!("sqlite://{}", dir.0.join("orders.db").display()),
            Db::Postgres(pg) => pg.url.clone(),
        }
    }

    /// Every order id in the table.
    async fn orders(&self) -> Vec<i64> {
        match self {
            Db::Sqlite(dir) => sqlite_ids(dir),
            Db::Postgres(pg) => postgres_ids(&pg.client).await,
        }
    }

    /// Every confirmed order id, one row each (the order id is the primary key).
    async fn confirmed(&self) -> Vec<i64> {
        const QUERY: &str = "SELECT order_id FROM confirmations ORDER BY order_id";
        match self {
            Db::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.0.join("orders.db")).unwrap();
                conn.busy_timeout(Duration::from_secs(5)).unwrap();
                let mut stmt = conn.prepare(QUERY).unwrap();
                let ids = stmt
                    .query_map([], |r| r.get(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                ids
            }
            Db::Postgres(pg) => pg
                .client
                .query(QUERY, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect(),
        }
    }
}

/// `orders worker` on the service's database and stream.
struct Worker(Child);

impl Worker {
    fn start(dir: &TempDir, db: &str, redis_url: &str) -> Worker {
        let child = Command::new(env!("CARGO_BIN_EXE_orders"))
            .args(["worker", "--redis-url", redis_url, "--database", db])
            .args(["--drain-timeout", "5000"])
            .env("ORDERS_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("worker.log")).unwrap())
            .spawn()
            .expect("spawning orders worker");
        Worker(child)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_every_201_order_is_confirmed_once() {
    let Some(redis) = RedisServer::start_or_skip("sqlite_every_201_order_is_confirmed_once") else {
        return;
    };
    let dir = TempDir::new("confirm");
    every_201_order_is_confirmed_once(&redis, &dir, Db::Sqlite(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_201_order_is_confirmed_once() {
    let Some(redis) = RedisServer::start_or_skip("postgres_every_201_order_is_confirmed_once")
    else {
        return;
    };
    let Some(pg) = postgres("confirm").await else {
        return;
    };
    let dir = TempDir::new("confirm-pg");
    every_201_order_is_confirmed_once(&redis, &dir, Db::Postgres(&pg)).await;
    pg.drop_schema().await;
}

async fn every_201_order_is_confirmed_once(redis: &RedisServer, dir: &TempDir, db: Db<'_>) {
    let url = redis.url();
    let db_url = db.url();

    // Phase 1: `--confirm-local 0`, so every confirmation goes to the stream; no worker runs
    // yet, so none may be confirmed when the service has stopped.
    let mut p = service_on(dir, &db_url, &["--redis-url", &url, "--confirm-local", "0"]);
    let mut ids = post_orders(&p).await;
    let m = p.metrics_text().await;
    assert_eq!(
        metric(&m, "orders_confirmations_queued_total"),
        ORDERS as u64,
        "{m}"
    );
    assert_eq!(metric(&m, "orders_confirmations_lost_total"), 0, "{m}");
    p.sigterm();
    assert!(p.wait_exit(Duration::from_secs(30)).success());
    assert!(
        db.confirmed().await.is_empty(),
        "confirmed without a worker"
    );
    drop(p);

    // Phase 2: the default local pool; some confirmations run here, any overflow goes to the
    // stream. Either way the outcome below is the same.
    let p = service_on(dir, &db_url, &["--redis-url", &url]);
    let second = post_orders(&p).await;
    assert!(ids.is_disjoint(&second));
    ids.extend(second);
    let table = BTreeSet::from_iter(db.orders().await);
    assert_eq!(
        ids, table,
        "every 201 order, and only those, is in the table"
    );

    let mut worker = Worker::start(dir, &db_url, &url);
    let start = Instant::now();
    let rows = loop {
        let rows = db.confirmed().await;
        if rows.len() >= ids.len() {
            break rows;
        }
        assert!(
            start.elapsed() < CONFIRM_LIMIT,
            "{} of {} confirmed after {CONFIRM_LIMIT:?}; worker log: {}",
            rows.len(),
            ids.len(),
            std::fs::read_to_string(dir.0.join("worker.log")).unwrap_or_default()
        );
        assert!(worker.0.try_wait().unwrap().is_none(), "the worker exited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // One row per order (the primary key), exactly the 201 orders.
    assert_eq!(rows.len(), ids.len());
    assert_eq!(BTreeSet::from_iter(rows), ids);

    // The worker drains on SIGTERM and exits 0.
    let ok = Command::new("kill")
        .args(["-TERM", &worker.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = worker.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "worker did not exit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let log = std::fs::read_to_string(dir.0.join("worker.log")).unwrap_or_default();
    assert!(status.success(), "{log}");
    assert!(log.contains("orders worker: stopped"), "{log}");
    drop(p);
}

#[test]
fn bad_redis_flags_are_clear_errors_at_start() {
    for (args, expect) in [
        (
            &["serve", "--redis-url", "http://127.0.0.1:6379"][..],
            "--redis-url",
        ),
        (&["serve", "--redis-url", "not a url"][..], "--redis-url"),
        (
            &[
                "worker",
                "--redis-url",
                "redis://127.0.0.1:1",
                "--max-deliveries",
                "0",
            ][..],
            "--max-deliveries",
        ),
        (&["worker"][..], "--redis-url"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_orders"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}
