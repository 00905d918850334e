//! Shared test setup: a redis-server of the test's own, a queue on it, consumer settings
//! scaled for tests, and polling with a generous deadline (conditions are awaited, never
//! timed: a slow machine only makes a test slower).
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::time::Duration;

use surgepool_redis::server::RedisServer;
use surgepool_redis::{Consumer, ConsumerBuilder, DrainReport, Queue, RedisError, Snapshot};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Longest any awaited condition may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(120);

pub fn server(test: &str) -> Option<RedisServer> {
    RedisServer::start_or_skip(test)
}

pub async fn queue(server: &RedisServer, name: &str) -> Queue {
    Queue::builder(&server.url(), name)
        .op_timeout(Duration::from_millis(500))
        .connect()
        .await
        .expect("connect to the test's redis-server")
}

/// Short backoffs and leases, so retries and reclaims happen within a test.
pub fn fast(builder: ConsumerBuilder) -> ConsumerBuilder {
    builder
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(100))
        .lease_bounds(Duration::from_millis(300), Duration::from_secs(5))
        .drain_grace(Duration::from_secs(5))
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after `PATIENCE`.
pub async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The consumer-side identity, at quiescence.
pub fn assert_consumer_identity(s: &Snapshot) {
    assert_eq!(
        s.fetched,
        s.acked + s.retried + s.dead + s.handed_back + s.stale + s.in_flight,
        "fetched = acked + retried + dead + handed back + stale + in flight: {s:?}"
    );
}

/// The fleet identity, at quiescence: pushed = acked + dead + waiting.
pub async fn assert_fleet_identity(queue: &Queue, acked: u64) {
    let fleet = queue.fleet().await.expect("fleet stats");
    assert_eq!(
        queue.pushed(),
        acked + fleet.dead + fleet.waiting(),
        "pushed = acked + dead + waiting: {fleet:?}"
    );
}

/// A consumer running `run_until` on a task of its own, until [`Running::stop`].
pub struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<DrainReport, RedisError>>,
}

/// Starts `consumer` on a task of its own; it runs until [`Running::stop`].
pub fn start(consumer: &Consumer) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let consumer = consumer.clone();
    let task = tokio::spawn(async move {
        consumer
            .run_until(async {
                let _ = stopped.await;
            })
            .await
    });
    Running { stop, task }
}

impl Running {
    /// Signals the stop and waits for the drain: its report, or the error the run ended with.
    pub async fn stop(self) -> Result<DrainReport, RedisError> {
        // An error here means the run already ended: its task holds the outcome.
        let _ = self.stop.send(());
        self.task.await.expect("the consumer's task panicked")
    }
}
