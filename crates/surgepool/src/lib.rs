//! Bounded, adaptive worker pools that keep a service fast and alive under overload.
//!
//! Both pools bound how much work runs at once (a [`Limit`], adaptive by default) and how
//! much waits, hand refused work back ([`SubmitError::Full`]), isolate panics, drain on
//! shutdown and count every task exactly ([`Snapshot`]). Which type for which work:
//!
//! | you have | use |
//! |---|---|
//! | async work: I/O, calls to other services | [`Pool`] (futures on the ambient tokio runtime) |
//! | CPU-bound or blocking closures | [`BlockingPool`] (OS threads, no runtime needed) |
//! | single rows to write in batches (group commit) | [`Batcher`] |
//! | a limit around calls you make yourself | [`limit::Limiter`] |
//! | HTTP or gRPC requests to shed | `surgepool-tower`'s `AdmissionLayer` |
//! | more work than one machine can take | `surgepool-redis` (overflow into Redis Streams) |
//!
//! Settings before going live: [`guide`]. Prometheus and friends: the `metrics` module
//! (feature `metrics`).
//!
//! # Numbers, and the commands that reproduce them
//!
//! The first two were measured on a 2-core machine shared with other builds, so they are
//! noisy; rerun them on yours.
//!
//! * **Batching**, one run (repository README):
//!   `cargo run --release -p surgepool-lab -- batch`. Items submitted one by one through
//!   [`Batcher`] committed 6009 rows/s into SQLite against 304 rows/s for a commit per row
//!   (19.8×), and 15342 rows/s into PostgreSQL against 816 (18.8×). The batcher was offered
//!   20 × the per-row rate (6083 and 16317 items/s), so these are the load, not its ceiling.
//! * **Cost of a limit** (`src/limit/README.md`, three runs):
//!   `cargo bench -p surgepool --bench limit -- --warm-up-time 1 --measurement-time 3`.
//!   A fixed limit's `try_acquire` + `success`, uncontended: 66–73 ns, against 52–61 ns for
//!   tokio's `Semaphore::try_acquire` + drop.
//! * **Where the adaptive limit settles** (simulated on paused tokio time, not a wall-clock
//!   measurement; `src/limit/README.md`):
//!   `cargo test -p surgepool --test limit_simulation -- --nocapture`. Median limit 16
//!   against a CPU knee of 16; 2048 against a waiting knee of 2000, reached in 0.54 s from 2.
//! * **Overload** (naive spawning against fixed and adaptive pools, open loop):
//!   `cargo run --release -p surgepool-lab -- overload --report lab-out`, on a quiet
//!   machine. Figures measured on a 2-core machine: the repository's README and
//!   `src/limit/README.md` (*In the lab*).
//!
//! # Examples
//!
//! ```
//! use surgepool::{Limit, Pool, SubmitError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = Pool::builder().limit(Limit::fixed(4)).queue_capacity(16).build()?;
//!
//! match pool.try_submit(async { 2 + 2 }) {
//!     Ok(handle) => assert_eq!(handle.await?, 4),
//!     // The pool is full: the future comes back, so the caller decides (503, retry, ...).
//!     Err(SubmitError::Full(_fut)) => {}
//!     Err(other) => return Err(other.into()),
//! }
//!
//! let report = pool.shutdown().await;
//! assert!(!report.timed_out);
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod accounting;
pub mod batch;
mod blocking;
mod clock;
mod completion;
mod error;
mod histogram;
pub mod limit;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod pool;
mod queue;
mod stats;
mod sync;
/// `tracing` events, behind the `tracing` feature (see the table in `trace.rs`).
mod trace;

/// A guide to the settings: which pool, which limit, how big a queue, which timeouts.
#[doc = include_str!("guide.md")]
pub mod guide {}

pub use batch::{BatchError, Batcher, Receipt};
pub use blocking::{BlockingHandle, BlockingPool, BlockingPoolBuilder};
pub use error::{BuildError, SubmitError, TaskError};
pub use limit::Limit;
pub use pool::{Pool, PoolBuilder, TaskHandle};
pub use stats::{LatencySummary, ShutdownReport, Snapshot};

/// The README's examples compile and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
