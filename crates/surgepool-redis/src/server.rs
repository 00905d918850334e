//! A `redis-server` process of our own, for tests and the lab: on a free port, in a temp
//! dir, with `--appendonly yes --appendfsync always` (every acknowledged write is on disk),
//! killed on drop. The machine's shared Redis keeps nothing on disk, so durability can only
//! be tested against a server we start, kill and restart on its AOF. See the
//! [example on `RedisServer`](RedisServer#examples).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a started server may take to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A `redis-server` child process with its own port and data dir.
///
/// # Examples
///
/// ```no_run
/// use surgepool_redis::server::RedisServer;
///
/// let Some(mut server) = RedisServer::start_or_skip("my_test") else { return Ok(()) };
/// println!("{}", server.url());
/// server.kill();          // kill -9
/// server.restart()?;      // same port and dir: reloads the AOF
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    fsync: String,
    child: Option<Child>,
}

impl RedisServer {
    /// Finds `redis-server` on PATH.
    ///
    /// See the [example on `RedisServer`](RedisServer#examples).
    pub fn binary() -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join("redis-server"))
            .find(|p| p.is_file())
    }

    /// Starts a server with `appendfsync always`.
    ///
    /// # Errors
    ///
    /// When `redis-server` is missing, or does not start and answer in time.
    ///
    /// See the [example on `RedisServer`](RedisServer#examples).
    pub fn start() -> std::io::Result<RedisServer> {
        RedisServer::start_with_fsync("always")
    }

    /// Starts a server with this `appendfsync` policy (`always`, `everysec` or `no`).
    ///
    /// # Errors
    ///
    /// When `redis-server` is missing, or does not start and answer in time.
    ///
    /// See the [example on `RedisServer`](RedisServer#examples).
    pub fn start_with_fsync(fsync: &str) -> std::io::Result<RedisServer> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "surgepool-redis-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut server = RedisServer {
            port,
            dir,
            fsync: fsync.to_owned(),
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    /// Starts a server, or returns `None` after printing why the caller skips, when
    /// `redis-server` is not installed. Under `CI=true` a missing server panics instead: CI
    /// must run these tests.
    ///
    /// See the [example on `RedisServer`](RedisServer#examples).
    pub fn start_or_skip(test: &str) -> Option<RedisServer> {
        if RedisServer::binary().is_none() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{test}: redis-server is not on PATH, and CI=true requires it");
            }
            eprintln!(
                "{test}: SKIPPED: redis-server is not on PATH (apt-get install redis-server)"
            );
            return None;
        }
        match RedisServer::start() {
            Ok(s) => Some(s),
            Err(e) => panic!("{test}: redis-server did not start: {e}"),
        }
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let bin = RedisServer::binary().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "redis-server is not on PATH")
        })?;
        let child = Command::new(bin)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--appendonly")
            .arg("yes")
            .arg("--appendfsync")
            .arg(&self.fsync)
            .arg("--save")
            .arg("")
            .arg("--daemonize")
            .arg("no")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < START_TIMEOUT {
            if self.ping() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "redis-server did not answer PING in time",
        ))
    }

    /// `true` when the server answers PING with PONG (not LOADING).
    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    /// `redis://127.0.0.1:<port>`.
    ///
    /// See the [example on `RedisServer`](RedisServer#examples).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    ///
    /// See the [example on `RedisServer`](RedisServer#examples).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data dir (holds the AOF).
    ///
    /// See the [example on `RedisServer`](RedisServer#examples).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the server with SIGKILL and waits for it: no shutdown, no final fsync.
    ///
    /// See the [example on `RedisServer`](RedisServer#examples).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and dir: it reloads its AOF.
    ///
    /// # Errors
    ///
    /// When it does not start and answer in time.
    ///
    /// See the [example on `RedisServer`](RedisServer#examples).
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
