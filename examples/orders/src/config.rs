//! Configuration: one struct per subcommand (clap, each flag with an `ORDERS_*` variable),
//! validated into real values before anything binds a port. A bad value is an error message
//! that names the flag, never a panic and never a silent default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "orders",
    version,
    about = "The surgepool reference service",
    args_conflicts_with_subcommands = true
)]
pub(crate) struct Cli {
    /// What to run (default: serve).
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    /// `orders` with no subcommand takes `serve`'s flags.
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, global = true, env = "ORDERS_LOG", default_value = "warn", value_parser = log_level)]
    log: tracing::Level,
}

impl Cli {
    pub(crate) fn log_level(&self) -> tracing::Level {
        self.log
    }
}

/// `--log`: a level by name (any case), or a clear error naming the five.
fn log_level(s: &str) -> Result<tracing::Level, String> {
    s.parse()
        .map_err(|_| format!("unknown log level {s:?}: expected error, warn, info, debug or trace"))
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the service (the default).
    Serve(ServeArgs),
    /// Run a flaky upstream for `/api/quote`, for tests and load runs.
    Upstream(UpstreamArgs),
    /// Consume the order confirmations that `serve --redis-url` overflowed into Redis, and
    /// record each in the database.
    Worker(WorkerArgs),
    /// Serve only `GET /api/hello` with plain `axum::serve` and no layers: the baseline that
    /// load runs compare the full stack with.
    Bare(BareArgs),
}

/// `orders serve`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ServeArgs {
    /// Public listener.
    #[arg(long, env = "ORDERS_ADDR", default_value = "127.0.0.1:8080")]
    pub(crate) addr: String,
    /// Admin listener (pprof, metrics): must be a loopback address.
    #[arg(long, env = "ORDERS_ADMIN_ADDR", default_value = "127.0.0.1:6060")]
    pub(crate) admin_addr: String,
    /// `sqlite://PATH` or `postgres://...`.
    #[arg(long, env = "ORDERS_DATABASE", default_value = "sqlite://orders.db")]
    pub(crate) database: String,
    /// How long in-flight requests may take to finish after SIGINT/SIGTERM, in ms.
    #[arg(long, env = "ORDERS_DRAIN_TIMEOUT", default_value_t = 10_000)]
    pub(crate) drain_timeout: u64,
    /// Base URL of the quote upstream (`GET {url}/quote`).
    #[arg(
        long,
        env = "ORDERS_UPSTREAM_URL",
        default_value = "http://127.0.0.1:9090"
    )]
    pub(crate) upstream_url: String,
    /// Redis URL (`redis://HOST:PORT`): when set, each committed order's confirmation job
    /// runs in a small local pool while it has room and overflows into a Redis stream
    /// otherwise, for `orders worker` to consume.
    #[arg(long, env = "ORDERS_REDIS_URL")]
    pub(crate) redis_url: Option<String>,
    /// The Redis stream of confirmation jobs (its consumer group is `STREAM:workers`).
    #[arg(long, env = "ORDERS_REDIS_STREAM", default_value = DEFAULT_STREAM)]
    pub(crate) redis_stream: String,
    /// Confirmations run locally at once, before the rest overflow into Redis (0: all go
    /// to Redis).
    #[arg(long, env = "ORDERS_CONFIRM_LOCAL", default_value_t = 16)]
    pub(crate) confirm_local: usize,
    /// Write each order in its own transaction instead of through the batcher.
    #[arg(long, env = "ORDERS_NO_BATCH")]
    pub(crate) no_batch: bool,
    /// Whole-request timeout (504), in ms.
    #[arg(long, env = "ORDERS_REQUEST_TIMEOUT", default_value_t = 2_000)]
    pub(crate) request_timeout: u64,
    /// Largest request body in bytes (413 above it).
    #[arg(long, env = "ORDERS_BODY_LIMIT", default_value_t = 64 * 1024)]
    pub(crate) body_limit: usize,
    /// Requests per second per client IP (429 above it).
    #[arg(long, env = "ORDERS_RATE_LIMIT", default_value_t = 2_000)]
    pub(crate) rate_limit: u32,
    /// Burst size per client IP.
    #[arg(long, env = "ORDERS_RATE_BURST", default_value_t = 4_000)]
    pub(crate) rate_burst: u32,
    /// Proxy IP whose `X-Forwarded-For` is trusted (repeatable); its right-most hop is the key.
    #[arg(
        long = "trusted-proxy",
        env = "ORDERS_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub(crate) trusted_proxies: Vec<String>,
    /// Consecutive upstream failures that open the breaker.
    #[arg(long, env = "ORDERS_BREAKER_FAILURES", default_value_t = 5)]
    pub(crate) breaker_failures: u32,
    /// How long the breaker stays open before one probe, in ms.
    #[arg(long, env = "ORDERS_BREAKER_COOLDOWN", default_value_t = 5_000)]
    pub(crate) breaker_cooldown: u64,
    /// Upstream total timeout, in ms (504 past it).
    #[arg(long, env = "ORDERS_UPSTREAM_TIMEOUT", default_value_t = 500)]
    pub(crate) upstream_timeout: u64,
    /// Header read timeout and idle keep-alive timeout of both listeners, in ms.
    #[arg(long, env = "ORDERS_HEADER_TIMEOUT", default_value_t = 5_000)]
    pub(crate) header_timeout: u64,
    /// Largest number of orders in one batch.
    #[arg(long, env = "ORDERS_MAX_BATCH", default_value_t = 1_000)]
    pub(crate) max_batch: usize,
    /// Orders that may wait for a commit before 503.
    #[arg(long, env = "ORDERS_QUEUE_CAPACITY", default_value_t = 10_000)]
    pub(crate) queue_capacity: usize,
    /// Requests that may wait for an admission permit (all routes) before 503. Short: at
    /// saturation every queued request adds its wait to the admitted ones' latency.
    #[arg(long, env = "ORDERS_ADMISSION_QUEUE", default_value_t = 16)]
    pub(crate) admission_queue: usize,
    /// Floor of the adaptive admission limit (all routes): requests in flight that are never
    /// refused for want of a permit. Sized for a commit of the batcher (see the README).
    #[arg(long, env = "ORDERS_ADMISSION_MIN", default_value_t = 512)]
    pub(crate) admission_min: usize,
}

/// The default confirmation stream.
const DEFAULT_STREAM: &str = "orders:confirmations";

/// Where confirmation jobs go (`--redis-url`, `--redis-stream`, `--confirm-local`).
#[derive(Debug, Clone)]
pub(crate) struct RedisConfig {
    pub(crate) url: String,
    pub(crate) stream: String,
    /// Local pool size; 0 sends every job to the stream.
    pub(crate) local: usize,
}

fn redis_config(url: &str, stream: &str, local: usize) -> anyhow::Result<RedisConfig> {
    let parsed =
        reqwest::Url::parse(url).with_context(|| format!("--redis-url {url:?}: not a URL"))?;
    if !matches!(parsed.scheme(), "redis" | "rediss") {
        bail!("--redis-url {url:?}: expected redis://HOST:PORT or rediss://HOST:PORT");
    }
    if stream.is_empty() || stream.len() > 200 {
        bail!("--redis-stream {stream:?}: must have 1 to 200 characters");
    }
    if local > 10_000 {
        bail!("--confirm-local {local}: at most 10000");
    }
    Ok(RedisConfig {
        url: url.to_owned(),
        stream: stream.to_owned(),
        local,
    })
}

/// Storage chosen by `--database`.
#[derive(Debug, Clone)]
pub(crate) enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

/// [`ServeArgs`], validated.
#[derive(Debug, Clone)]
pub(crate) struct ServeConfig {
    pub(crate) addr: SocketAddr,
    pub(crate) admin_addr: SocketAddr,
    pub(crate) database: Database,
    pub(crate) drain_timeout: Duration,
    pub(crate) upstream_url: String,
    pub(crate) no_batch: bool,
    pub(crate) request_timeout: Duration,
    pub(crate) body_limit: usize,
    pub(crate) rate_limit: std::num::NonZeroU32,
    pub(crate) rate_burst: std::num::NonZeroU32,
    pub(crate) trusted_proxies: Vec<std::net::IpAddr>,
    pub(crate) breaker_failures: u32,
    pub(crate) breaker_cooldown: Duration,
    pub(crate) upstream_timeout: Duration,
    pub(crate) header_timeout: Duration,
    pub(crate) max_batch: usize,
    pub(crate) queue_capacity: usize,
    pub(crate) admission_queue: usize,
    pub(crate) admission_min: usize,
    pub(crate) redis: Option<RedisConfig>,
}

/// The highest `--admission-min`: the adaptive limit's own ceiling (`Limit::adaptive()`
/// stops at 10,000), so the floor can never sit above it.
const MAX_ADMISSION_MIN: usize = 10_000;

/// Durations from flags are capped at a day: `u64::MAX` ms is refused rather than overflowing
/// an `Instant` somewhere deep inside a timer.
const MAX_MS: u64 = 24 * 60 * 60 * 1000;

fn millis(flag: &str, ms: u64) -> anyhow::Result<Duration> {
    if ms == 0 || ms > MAX_MS {
        bail!("--{flag} {ms}: must be between 1 and {MAX_MS} ms");
    }
    Ok(Duration::from_millis(ms))
}

fn socket(flag: &str, value: &str) -> anyhow::Result<SocketAddr> {
    value
        .parse()
        .with_context(|| format!("--{flag} {value:?}: expected IP:PORT, e.g. 127.0.0.1:8080"))
}

fn non_zero(flag: &str, v: u32) -> anyhow::Result<std::num::NonZeroU32> {
    std::num::NonZeroU32::new(v).with_context(|| format!("--{flag} 0: must be at least 1"))
}

fn database(value: &str) -> anyhow::Result<Database> {
    if let Some(path) = value.strip_prefix("sqlite://") {
        if path.is_empty() {
            bail!("--database sqlite://: the path is empty (e.g. sqlite://orders.db)");
        }
        Ok(Database::Sqlite(PathBuf::from(path)))
    } else if value.starts_with("postgres://") || value.starts_with("postgresql://") {
        value
            .parse::<tokio_postgres::Config>()
            .with_context(|| format!("--database {value:?}"))?;
        Ok(Database::Postgres(value.to_owned()))
    } else {
        bail!("--database {value:?}: expected sqlite://PATH or postgres://...");
    }
}

impl ServeArgs {
    pub(crate) fn validate(self) -> anyhow::Result<ServeConfig> {
        let admin_addr = socket("admin-addr", &self.admin_addr)?;
        if !admin_addr.ip().is_loopback() {
            // Seed 001: pprof and metrics leak internals and cost CPU on demand; they are never
            // served where anyone but the machine's own users can reach them.
            bail!(
                "--admin-addr {admin_addr}: the admin listener serves profiles and metrics and \
                 must bind a loopback address (127.0.0.1 or ::1); refusing to start"
            );
        }
        let database = database(&self.database)?;
        let upstream_url = self.upstream_url.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&upstream_url)
            .with_context(|| format!("--upstream-url {:?}", self.upstream_url))?;
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .map(|p| {
                p.parse()
                    .with_context(|| format!("--trusted-proxy {p:?}: expected an IP address"))
            })
            .collect::<anyhow::Result<_>>()?;
        if self.body_limit == 0 || self.body_limit > 1 << 30 {
            bail!(
                "--body-limit {}: must be between 1 and 2^30 bytes",
                self.body_limit
            );
        }
        if self.max_batch == 0 || self.max_batch > 100_000 {
            bail!(
                "--max-batch {}: must be between 1 and 100000",
                self.max_batch
            );
        }
        if self.admission_queue > 1_000_000 {
            bail!(
                "--admission-queue {}: at most 1000000",
                self.admission_queue
            );
        }
        if self.admission_min == 0 || self.admission_min > MAX_ADMISSION_MIN {
            bail!(
                "--admission-min {}: must be between 1 and {MAX_ADMISSION_MIN}",
                self.admission_min
            );
        }
        if self.queue_capacity > 10_000_000 {
            bail!("--queue-capacity {}: at most 10000000", self.queue_capacity);
        }
        if self.breaker_failures == 0 {
            bail!("--breaker-failures 0: must be at least 1");
        }
        Ok(ServeConfig {
            addr: socket("addr", &self.addr)?,
            admin_addr,
            database,
            drain_timeout: millis("drain-timeout", self.drain_timeout)?,
            upstream_url,
            no_batch: self.no_batch,
            request_timeout: millis("request-timeout", self.request_timeout)?,
            body_limit: self.body_limit,
            rate_limit: non_zero("rate-limit", self.rate_limit)?,
            rate_burst: non_zero("rate-burst", self.rate_burst)?,
            trusted_proxies,
            breaker_failures: self.breaker_failures,
            breaker_cooldown: millis("breaker-cooldown", self.breaker_cooldown)?,
            upstream_timeout: millis("upstream-timeout", self.upstream_timeout)?,
            header_timeout: millis("header-timeout", self.header_timeout)?,
            max_batch: self.max_batch,
            queue_capacity: self.queue_capacity,
            admission_queue: self.admission_queue,
            admission_min: self.admission_min,
            redis: self
                .redis_url
                .as_deref()
                .map(|url| redis_config(url, &self.redis_stream, self.confirm_local))
                .transpose()?,
        })
    }
}

/// `orders upstream`.
#[derive(Debug, Clone, Args)]
pub(crate) struct UpstreamArgs {
    /// Listener.
    #[arg(long, env = "ORDERS_UPSTREAM_ADDR", default_value = "127.0.0.1:9090")]
    pub(crate) addr: String,
    /// Share of requests answered 500, 0.0..=1.0 (`POST /control?fail_rate=X` changes it).
    #[arg(long, env = "ORDERS_UPSTREAM_FAIL_RATE", default_value_t = 0.3)]
    pub(crate) fail_rate: f64,
    /// Delay before each answer, in ms (`POST /control?delay_ms=N` changes it).
    #[arg(long, env = "ORDERS_UPSTREAM_DELAY_MS", default_value_t = 50)]
    pub(crate) delay_ms: u64,
}

/// [`UpstreamArgs`], validated.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamConfig {
    pub(crate) addr: SocketAddr,
    pub(crate) fail_rate: f64,
    pub(crate) delay_ms: u64,
}

impl UpstreamArgs {
    pub(crate) fn validate(self) -> anyhow::Result<UpstreamConfig> {
        if !(0.0..=1.0).contains(&self.fail_rate) {
            bail!(
                "--fail-rate {}: must be between 0.0 and 1.0",
                self.fail_rate
            );
        }
        if self.delay_ms > MAX_MS {
            bail!("--delay-ms {}: at most {MAX_MS}", self.delay_ms);
        }
        Ok(UpstreamConfig {
            addr: socket("addr", &self.addr)?,
            fail_rate: self.fail_rate,
            delay_ms: self.delay_ms,
        })
    }
}

/// `orders worker`.
#[derive(Debug, Clone, Args)]
pub(crate) struct WorkerArgs {
    /// Redis URL (`redis://HOST:PORT`), the same as the service's.
    #[arg(long, env = "ORDERS_REDIS_URL")]
    pub(crate) redis_url: String,
    /// The stream to consume, the same as the service's.
    #[arg(long, env = "ORDERS_REDIS_STREAM", default_value = DEFAULT_STREAM)]
    pub(crate) redis_stream: String,
    /// `sqlite://PATH` or `postgres://...`: the service's database.
    #[arg(long, env = "ORDERS_DATABASE", default_value = "sqlite://orders.db")]
    pub(crate) database: String,
    /// Deliveries a confirmation gets before it goes to the dead-letter stream.
    #[arg(long, env = "ORDERS_MAX_DELIVERIES", default_value_t = 5)]
    pub(crate) max_deliveries: u32,
    /// How long running confirmations may finish after SIGINT/SIGTERM before they are handed
    /// back to the stream, in ms.
    #[arg(long, env = "ORDERS_DRAIN_TIMEOUT", default_value_t = 10_000)]
    pub(crate) drain_timeout: u64,
}

/// [`WorkerArgs`], validated.
#[derive(Debug, Clone)]
pub(crate) struct WorkerConfig {
    pub(crate) redis: RedisConfig,
    pub(crate) database: Database,
    pub(crate) max_deliveries: u32,
    pub(crate) drain_timeout: Duration,
}

impl WorkerArgs {
    pub(crate) fn validate(self) -> anyhow::Result<WorkerConfig> {
        if self.max_deliveries == 0 || self.max_deliveries > 1000 {
            bail!(
                "--max-deliveries {}: must be between 1 and 1000",
                self.max_deliveries
            );
        }
        Ok(WorkerConfig {
            redis: redis_config(&self.redis_url, &self.redis_stream, 0)?,
            database: database(&self.database)?,
            max_deliveries: self.max_deliveries,
            drain_timeout: millis("drain-timeout", self.drain_timeout)?,
        })
    }
}

/// `orders bare`.
#[derive(Debug, Clone, Args)]
pub(crate) struct BareArgs {
    /// Listener.
    #[arg(long, env = "ORDERS_BARE_ADDR", default_value = "127.0.0.1:8081")]
    pub(crate) addr: String,
}

impl BareArgs {
    pub(crate) fn validate(self) -> anyhow::Result<SocketAddr> {
        socket("addr", &self.addr)
    }
}
