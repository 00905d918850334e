//! Starts the real `orders` binary (and its flaky upstream) on port 0, in a temp dir, and
//! talks to it over real sockets.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("orders-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `orders` process.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub log: PathBuf,
}

impl Proc {
    /// Runs `orders ARGS`, waits for `listening on http://ADDR` (and `admin on`, if printed).
    pub fn start(args: &[&str], log: PathBuf) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_orders"))
            .args(args)
            .env("ORDERS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawning orders");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut admin = None;
        loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.wait();
                panic!(
                    "orders exited before listening: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            };
            if let Some(a) = line.strip_prefix("admin on http://") {
                admin = Some(a.parse().unwrap());
            }
            if let Some(a) = line.strip_prefix("listening on http://") {
                // Keep draining stdout so the child never blocks on a full pipe.
                std::thread::spawn(move || for _ in lines {});
                return Proc {
                    child,
                    addr: a.parse().unwrap(),
                    admin,
                    log,
                };
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin.expect("no admin listener"))
    }

    /// The admin listener's `/metrics` page (Prometheus text).
    pub async fn metrics_text(&self) -> String {
        client()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "orders did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The highest RSS the process has had (its high-water mark), in KiB.
    #[allow(dead_code)] // not every test binary uses it
    pub fn rss_peak_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A service on SQLite in `dir`, plus `extra` flags.
pub fn service(dir: &TempDir, extra: &[&str]) -> Proc {
    let db = format!("sqlite://{}", dir.0.join("orders.db").display());
    let mut args = vec![
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--database",
        &db,
    ];
    args.extend_from_slice(extra);
    Proc::start(&args, dir.0.join("orders.log"))
}

/// A service on `database`, plus `extra` flags.
pub fn service_on(dir: &TempDir, database: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--database",
        database,
    ];
    args.extend_from_slice(extra);
    Proc::start(&args, dir.0.join("orders.log"))
}

/// A flaky upstream.
pub fn upstream(dir: &TempDir, fail_rate: &str, delay_ms: &str) -> Proc {
    Proc::start(
        &[
            "upstream",
            "--addr",
            "127.0.0.1:0",
            "--fail-rate",
            fail_rate,
            "--delay-ms",
            delay_ms,
        ],
        dir.0.join("upstream.log"),
    )
}

/// A pooled blocking-free async client with a timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A one-shot raw HTTP/1.1 exchange: writes `request`, reads until close or `limit`.
pub fn raw(addr: SocketAddr, request: &[u8], limit: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `status` of the first response in `raw` text.
pub fn status_of(text: &str) -> Option<u16> {
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// The value of the Prometheus line `name` (exact, labels included), or 0.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A fresh PostgreSQL schema: the URL that puts the service in it, and a client in it.
pub struct Pg {
    pub url: String,
    pub client: tokio_postgres::Client,
    schema: String,
}

impl Pg {
    /// Drops the schema (call after the service stopped; a failed test leaves it behind).
    pub async fn drop_schema(&self) {
        let _ = self
            .client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .await;
    }
}

/// A fresh PostgreSQL schema, or `None` (after saying so) when PostgreSQL is not reachable.
/// Under `CI=true` an unreachable PostgreSQL fails the test instead.
pub async fn postgres(tag: &str) -> Option<Pg> {
    for user in ["root", "postgres"] {
        let base = format!("postgres://{user}@127.0.0.1:5432/test");
        let Ok(Ok((client, conn))) = tokio::time::timeout(
            Duration::from_secs(3),
            tokio_postgres::connect(&base, tokio_postgres::NoTls),
        )
        .await
        else {
            continue;
        };
        tokio::spawn(conn);
        let schema = format!(
            "orders_{tag}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; SET search_path = {schema}"))
            .await
            .unwrap();
        let url = format!("{base}?options=-csearch_path%3D{schema}");
        return Some(Pg {
            url,
            client,
            schema,
        });
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("PostgreSQL at 127.0.0.1:5432 (db test, user root or postgres) is not reachable, and CI=true");
    }
    eprintln!("SKIPPED: PostgreSQL at 127.0.0.1:5432 (db test) is not reachable");
    None
}

/// Every order id in a SQLite database.
pub fn sqlite_ids(dir: &TempDir) -> Vec<i64> {
    let conn = rusqlite::Connection::open(dir.0.join("orders.db")).unwrap();
    let mut stmt = conn.prepare("SELECT id FROM orders ORDER BY id").unwrap();
    let ids = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    ids
}

/// Every order id in the PostgreSQL schema the client's search_path names.
pub async fn postgres_ids(client: &tokio_postgres::Client) -> Vec<i64> {
    client
        .query("SELECT id FROM orders ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}
