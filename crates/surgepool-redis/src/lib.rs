//! Overflow a surgepool [`Pool`](surgepool::Pool) into Redis Streams, and drain the stream
//! with adaptive consumers on any number of machines.
//!
//! * [`Queue`]: one stream with one consumer group; [`Queue::push`] and [`Queue::push_many`]
//!   (pipelined) add jobs whose payloads are bytes.
//! * [`Overflow`]: the producer's fast path. A job runs in the local pool while it has room;
//!   when the pool would say `Full`, it is pushed to the stream before `submit` returns. Past
//!   the stream's bound, `Full`: shed.
//! * [`Consumer`]: runs anywhere, fetches exactly as many jobs as its limit has free permits,
//!   acks only after success, retries with backoff, dead-letters after `max_deliveries`,
//!   reclaims the jobs of dead consumers after a lease derived from observed run times,
//!   renews the leases of slow live jobs, and hands back unfinished jobs when it drains.
//!
//! Every multi-step change in Redis is one Lua script (see `src/scripts/*.lua`), so a crash
//! or restart between steps can neither lose a job nor leave it in two places. The crate's
//! README documents the guarantees, which Redis persistence settings give them, and their
//! limits.
//!
//! Which type: a producer wraps its pool in an [`Overflow`] (or pushes with [`Queue::push`]
//! when every job should go through Redis); any number of machines run a [`Consumer`];
//! [`Consumer::snapshot`] and [`Queue::fleet`] give the accounting. Use this crate only
//! when one machine is not enough: overflowed jobs run at least once, not exactly once, so
//! handlers must be idempotent on [`Job::id`].
//!
//! Throughput depends on Redis and its persistence setting; no figures are recorded in the
//! repository yet. Measure on an idle machine (both need `redis-server` on PATH):
//! `cargo run --release -p surgepool-lab -- fleet` (a local pool overflowing into Redis
//! Streams, drained by consumers) and
//! `cargo run --release -p surgepool-redis --example throughput -- everysec` (push and
//! end-to-end rates).
//!
//! # Examples
//!
//! ```no_run
//! use surgepool::{Limit, Pool};
//! use surgepool_redis::{Consumer, Job, Overflow, Queue};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let handler = |job: Job| async move {
//!     println!("sending {:?}", job.payload());
//!     Ok::<(), String>(())
//! };
//! let pool = Pool::builder().queue_capacity(0).build()?;
//! let queue = Queue::connect("redis://127.0.0.1:6379", "emails").await?;
//! let overflow = Overflow::new(pool.clone(), queue.clone(), handler);
//! overflow.submit(&b"hello"[..]).await?;
//!
//! let consumer = Consumer::builder(queue, handler)
//!     .limit(Limit::adaptive())
//!     .max_deliveries(5)
//!     .build()?;
//! let report = consumer.run_until(shutdown_signal()).await?;
//! # let _ = report;
//! # Ok(())
//! # }
//! # async fn shutdown_signal() {} // e.g. tokio::signal::ctrl_c
//! ```
#![forbid(unsafe_code)]

mod consumer;
mod error;
mod fleet;
mod job;
#[cfg(feature = "metrics")]
mod metrics;
mod overflow;
mod queue;
mod scripts;
pub mod server;
mod stats;

pub use consumer::{Consumer, ConsumerBuilder, DrainReport};
pub use error::{BuildError, OverflowError, PushError, PushManyError, RedisError};
pub use fleet::FleetStats;
pub use job::{Handler, HandlerFuture, Job, JobError, Source};
pub use overflow::{Overflow, OverflowStats, Routed, WhenUnavailable};
pub use queue::{Queue, QueueBuilder};
pub use stats::Snapshot;
