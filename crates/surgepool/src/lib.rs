//! Bounded, adaptive worker pools that keep a service fast and alive under overload.
//!
//! `surgepool` gives you two pools with one contract:
//!
//! * [`Pool`] runs futures on the ambient tokio runtime;
//! * [`BlockingPool`] runs closures on OS threads (CPU-bound or blocking work).
//!
//! Both bound how much work runs at once (the [`Limit`], adaptive by default) and how much
//! waits (the queue), hand rejected work back to the caller instead of dropping it, isolate
//! panics per task, drain on shutdown, and account for every task exactly (see
//! [`Snapshot`]). The [`limit`] module is usable on its own, for example by
//! `surgepool-tower` to shed HTTP requests.
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
