//! Concurrency limits: how many jobs may be in flight at once, fixed or found by itself.
//!
//! A [`Limit`] is a description (a value you pass to a builder); a [`Limiter`] is the live
//! thing that admits work. Both pools and `surgepool-tower` run on a `Limiter`, and you can
//! use one directly, for example around calls to a downstream service:
//!
//! ```
//! use surgepool::limit::{Limit, Limiter};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let limiter = Limiter::new(Limit::fixed(2)).unwrap();
//! let a = limiter.try_acquire().expect("under the limit");
//! let b = limiter.try_acquire().expect("under the limit");
//! assert!(limiter.try_acquire().is_none()); // at the limit: shed, or wait with `acquire`
//! a.success(); // report the outcome; the latency feeds an adaptive limit
//! b.dropped(); // e.g. the call timed out or the server said 503
//! assert_eq!(limiter.in_flight(), 0);
//! # }
//! ```
//!
//! # Memory ordering
//!
//! Admission is one compare-and-swap on the in-flight count against the current limit;
//! release is one subtraction. The limit may shrink while permits are held: nothing is
//! revoked, admission simply stops until in-flight work drains below the new limit.

mod algorithm;
mod limiter;

pub(crate) use algorithm::{Algorithm, Sample};
pub(crate) use limiter::Outcome;
pub use limiter::{Limiter, LimiterStats, Permit};

use crate::error::BuildError;

/// A concurrency limit: a fixed number, or an algorithm that finds the number by itself.
///
/// `Limit` is only a description; pools and [`Limiter::new`] validate it and build the live
/// state. Bad values are reported by `build()` as a [`BuildError`], never by a panic.
///
/// # Examples
///
/// ```
/// use surgepool::{Limit, Pool};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // CPU-bound work that must never exceed 8 at once:
/// let cpu = Pool::builder().limit(Limit::fixed(8)).build().unwrap();
/// // Let the pool find the right concurrency (the default):
/// let auto = Pool::builder().limit(Limit::adaptive()).build().unwrap();
/// # drop((cpu, auto));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Limit {
    pub(crate) config: Config,
}

/// The algorithm behind a [`Limit`], with its settings.
#[derive(Debug, Clone)]
pub(crate) enum Config {
    Fixed(usize),
    /// Placeholder until the adaptive controller lands: behaves as a fixed limit.
    Adaptive {
        initial: usize,
    },
}

impl Limit {
    /// Exactly `n` jobs at once. `n` must be at least 1 (checked by `build()`).
    pub fn fixed(n: usize) -> Limit {
        Limit {
            config: Config::Fixed(n),
        }
    }

    /// The default: a limit that adapts to the work.
    ///
    /// **Currently** it behaves as a fixed limit of 4 × the machine's available
    /// parallelism; the adaptive controller replaces this.
    pub fn adaptive() -> Limit {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Limit {
            config: Config::Adaptive { initial: cores * 4 },
        }
    }

    /// Checks the settings; `build()` calls this.
    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        match self.config {
            Config::Fixed(0) => Err(BuildError::new(
                "limit",
                "a fixed limit must be at least 1 (0 would admit nothing, ever)",
            )),
            _ => Ok(()),
        }
    }

    /// The limit a new limiter starts at.
    pub(crate) fn initial(&self) -> usize {
        match self.config {
            Config::Fixed(n) => n,
            Config::Adaptive { initial } => initial,
        }
    }

    /// The algorithm that moves the limit, or `None` when it never moves.
    pub(crate) fn algorithm(&self) -> Option<Box<dyn Algorithm>> {
        match self.config {
            Config::Fixed(_) | Config::Adaptive { .. } => None,
        }
    }

    /// `true` for a fixed limit.
    pub fn is_fixed(&self) -> bool {
        matches!(self.config, Config::Fixed(_))
    }
}

impl Default for Limit {
    /// [`Limit::adaptive()`].
    fn default() -> Limit {
        Limit::adaptive()
    }
}
