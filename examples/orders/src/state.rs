//! What every route shares, behind one `Arc`.

use std::sync::Arc;
use std::time::Duration;

use crate::breaker::Breaker;
use crate::config::ServeConfig;
use crate::confirm::Confirmations;
use crate::metrics::HttpMetrics;
use crate::storage::{Storage, User};
use crate::writer::{OrderWriter, WriterConfig};

/// How long a user stays cached: short, so an update shows within a second, but long enough
/// that a hot id costs one query per second instead of one per request.
pub(crate) const USER_TTL: Duration = Duration::from_secs(1);

/// Shared state.
#[derive(Debug, Clone)]
pub(crate) struct AppState(pub(crate) Arc<Shared>);

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) users: moka::future::Cache<i64, Option<Arc<User>>>,
    pub(crate) user_loads: std::sync::atomic::AtomicU64,
    pub(crate) http: reqwest::Client,
    pub(crate) upstream_quote_url: String,
    pub(crate) breaker: Breaker,
    pub(crate) writer: OrderWriter,
    pub(crate) metrics: Arc<HttpMetrics>,
    /// Confirmation jobs (`--redis-url`), or `None`.
    pub(crate) confirmations: Option<Arc<Confirmations>>,
    /// How long a 201 waits for its confirmation job to be sent: the request's slack after
    /// the writer's deadline, halved, so a slow Redis never turns a commit into a 504.
    pub(crate) confirm_budget: Duration,
}

impl AppState {
    pub(crate) fn new(
        cfg: &ServeConfig,
        storage: Arc<dyn Storage>,
        confirmations: Option<Arc<Confirmations>>,
    ) -> anyhow::Result<AppState> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.upstream_timeout.min(Duration::from_millis(250)))
            .timeout(cfg.upstream_timeout)
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        let deadline = cfg.request_timeout.mul_f64(0.75);
        Ok(AppState(Arc::new(Shared {
            users: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(USER_TTL)
                .build(),
            user_loads: Default::default(),
            http,
            upstream_quote_url: format!("{}/quote", cfg.upstream_url),
            breaker: Breaker::new(cfg.breaker_failures, cfg.breaker_cooldown),
            writer: OrderWriter::new(
                storage.clone(),
                WriterConfig {
                    batch: !cfg.no_batch,
                    deadline,
                    max_batch: cfg.max_batch,
                    queue_capacity: cfg.queue_capacity,
                },
            )?,
            storage,
            metrics: HttpMetrics::new(),
            confirmations,
            confirm_budget: cfg.request_timeout.mul_f64(0.125),
        })))
    }
}
