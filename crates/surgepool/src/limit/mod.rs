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
//! release is one subtraction. Both are `SeqCst`, pairing with the waiter count that a
//! parked [`Limiter::acquire`] raises before it re-checks, so a release never misses a
//! waiter. The limit may shrink while permits are held: nothing is revoked, admission simply
//! stops until in-flight work drains below the new limit. An adaptive algorithm's `update`
//! runs under a mutex once per released permit (O(1), no allocation); a fixed limit takes no
//! lock and reads no clock.

mod adaptive;
mod adaptive_config;
mod aimd;
mod algorithm;
mod gradient2;
mod limiter;
#[cfg(all(test, loom))]
mod loom;
mod permit;
mod vegas;
mod waiters;

pub use adaptive_config::AdaptiveBuilder;
pub use aimd::AimdBuilder;
pub(crate) use algorithm::{Algorithm, Sample};
pub use gradient2::Gradient2Builder;
pub(crate) use limiter::Outcome;
pub use limiter::{Limiter, LimiterStats};
pub use permit::Permit;
pub use vegas::VegasBuilder;

use crate::error::BuildError;

/// A concurrency limit: a fixed number, or an algorithm that finds the number by itself.
///
/// `Limit` is only a description; pools and [`Limiter::new`] build the live state from it.
/// Bad values are reported as a [`BuildError`] (by a builder's `build()`, or by the pool or
/// limiter that receives the limit), never by a panic.
///
/// | constructor | what it does |
/// |---|---|
/// | [`Limit::fixed`] | exactly `n`, never moves |
/// | [`Limit::adaptive`] | **the default**: finds the knee by itself, for waiting and CPU work |
/// | [`Limit::aimd`] | Netflix's AIMD: +1 per success, ×0.9 per drop or timeout |
/// | [`Limit::vegas`] | Netflix's Vegas: queue estimated from no-load RTT / RTT |
/// | [`Limit::gradient2`] | Netflix's Gradient2: RTT against its long-term average |
///
/// Each algorithm has a builder for its knobs (`Limit::adaptive_builder()`, ...). The
/// formulas and their sources are in `src/limit/README.md`.
///
/// # Examples
///
/// ```
/// use surgepool::{Limit, Pool};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), surgepool::BuildError> {
/// // CPU-bound work that must never exceed 8 at once:
/// let cpu = Pool::builder().limit(Limit::fixed(8)).build()?;
/// // Let the pool find the right concurrency (the default):
/// let auto = Pool::builder().limit(Limit::adaptive()).build()?;
/// // The same, but never more than 50 at once (say, a database's connection cap):
/// let capped = Pool::builder()
///     .limit(Limit::adaptive_builder().max(50).build()?)
///     .build()?;
/// # drop((cpu, auto, capped));
/// # Ok(())
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
    Adaptive(adaptive_config::AdaptiveConfig),
    Aimd(aimd::AimdConfig),
    Vegas(vegas::VegasConfig),
    Gradient2(gradient2::Gradient2Config),
}

impl Limit {
    /// Exactly `n` jobs at once. `n` must be at least 1 (a pool or [`Limiter::new`] reports
    /// `Limit::fixed(0)` as a [`BuildError`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use surgepool::limit::{Limit, Limiter};
    ///
    /// assert_eq!(Limiter::new(Limit::fixed(3)).unwrap().limit(), 3);
    /// assert!(Limiter::new(Limit::fixed(0)).is_err());
    /// ```
    pub fn fixed(n: usize) -> Limit {
        Limit {
            config: Config::Fixed(n),
        }
    }

    /// The default: a limit that finds the right concurrency by itself.
    ///
    /// It starts at the machine's available parallelism, doubles while goodput doubles with
    /// it and latency stays flat (waiting work reaches thousands within a few seconds), cuts
    /// back when latency rises above 1.25 × the base RTT (CPU work settles near the core
    /// count), and keeps probing: a step up is kept only if goodput rose with it, a step
    /// down only if goodput did not fall with it. The base RTT is re-measured at half the
    /// limit every 10–11.5 s, so it cannot drift. Disturbances that are not overload do not
    /// pull it down for long: fast failures or clients that leave early while latency
    /// stays flat do not cut it, a latency above tolerance at the minimum re-learns the
    /// base, and callers turned away (say, honouring `Retry-After`) still count as demand.
    /// Bounds: 1 to 10 000; see
    /// [`Limit::adaptive_builder`] to change them or the other knobs.
    ///
    /// The limit learns from the latency and outcome of each finished job: a pool reports
    /// them itself; with a bare [`Limiter`], release each [`Permit`] with
    /// [`success`](Permit::success) (or `dropped` / `ignore`).
    ///
    /// # Examples
    ///
    /// ```
    /// use surgepool::limit::{Limit, Limiter};
    ///
    /// let limiter = Limiter::new(Limit::adaptive()).unwrap();
    /// assert!(limiter.limit() >= 1);
    /// ```
    pub fn adaptive() -> Limit {
        Limit {
            config: Config::Adaptive(adaptive_config::AdaptiveConfig::default()),
        }
    }

    /// A builder for [`Limit::adaptive`] with other bounds or knobs.
    ///
    /// # Examples
    ///
    /// ```
    /// use surgepool::Limit;
    ///
    /// let limit = Limit::adaptive_builder().min(2).max(10_000).build()?;
    /// # Ok::<(), surgepool::BuildError>(())
    /// ```
    pub fn adaptive_builder() -> AdaptiveBuilder {
        AdaptiveBuilder::new()
    }

    /// Netflix's AIMD with its defaults: +1 for each success while the limit is at least
    /// half used, ×0.9 for each drop or job slower than 5 s; initial 20, min 20, max 200.
    /// It only backs off on drops, so report them ([`Permit::dropped`]).
    ///
    /// See the [example on `AimdBuilder`](AimdBuilder#examples).
    pub fn aimd() -> Limit {
        Limit {
            config: Config::Aimd(aimd::AimdConfig::default()),
        }
    }

    /// A builder for [`Limit::aimd`].
    ///
    /// See the [example on `AimdBuilder`](AimdBuilder#examples).
    pub fn aimd_builder() -> AimdBuilder {
        AimdBuilder::new()
    }

    /// Netflix's Vegas with its defaults: initial 20, max 1000, the no-load RTT re-probed
    /// every 15–30 × limit samples.
    ///
    /// See the [example on `VegasBuilder`](VegasBuilder#examples).
    pub fn vegas() -> Limit {
        Limit {
            config: Config::Vegas(vegas::VegasConfig::default()),
        }
    }

    /// A builder for [`Limit::vegas`].
    ///
    /// See the [example on `VegasBuilder`](VegasBuilder#examples).
    pub fn vegas_builder() -> VegasBuilder {
        VegasBuilder::new()
    }

    /// Netflix's Gradient2 with its defaults: initial 20, min 20, max 200, smoothing 0.2,
    /// queue size 4, long window 600 samples, RTT tolerance 1.5.
    ///
    /// See the [example on `Gradient2Builder`](Gradient2Builder#examples).
    pub fn gradient2() -> Limit {
        Limit {
            config: Config::Gradient2(gradient2::Gradient2Config::default()),
        }
    }

    /// A builder for [`Limit::gradient2`].
    ///
    /// See the [example on `Gradient2Builder`](Gradient2Builder#examples).
    pub fn gradient2_builder() -> Gradient2Builder {
        Gradient2Builder::new()
    }

    /// Checks the settings; pools and [`Limiter::new`] call this.
    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        match &self.config {
            Config::Fixed(0) => Err(BuildError::new(
                "limit",
                "a fixed limit must be at least 1 (0 would admit nothing, ever)",
            )),
            Config::Fixed(_) => Ok(()),
            Config::Adaptive(c) => c.validate(),
            Config::Aimd(c) => c.validate(),
            Config::Vegas(c) => c.validate(),
            Config::Gradient2(c) => c.validate(),
        }
    }

    /// The limit a new limiter starts at.
    pub(crate) fn initial(&self) -> usize {
        match &self.config {
            Config::Fixed(n) => *n,
            Config::Adaptive(c) => c.initial(),
            Config::Aimd(c) => c.initial,
            Config::Vegas(c) => c.initial,
            Config::Gradient2(c) => c.initial,
        }
    }

    /// The algorithm that moves the limit, or `None` when it never moves.
    pub(crate) fn algorithm(&self) -> Option<Box<dyn Algorithm>> {
        match &self.config {
            Config::Fixed(_) => None,
            Config::Adaptive(c) => Some(Box::new(adaptive::Adaptive::new(*c))),
            Config::Aimd(c) => Some(Box::new(aimd::Aimd::new(*c))),
            Config::Vegas(c) => Some(Box::new(vegas::Vegas::new(*c))),
            Config::Gradient2(c) => Some(Box::new(gradient2::Gradient2::new(*c))),
        }
    }

    /// `true` for a fixed limit.
    ///
    /// ```
    /// use surgepool::Limit;
    ///
    /// assert!(Limit::fixed(8).is_fixed());
    /// assert!(!Limit::adaptive().is_fixed());
    /// ```
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

/// Checks `1 <= min <= initial <= max`, naming the setting that breaks it.
pub(crate) fn check_bounds(min: usize, initial: usize, max: usize) -> Result<(), BuildError> {
    if min == 0 {
        return Err(BuildError::new(
            "min",
            "must be at least 1 (a limit of 0 would admit nothing, ever)",
        ));
    }
    if max < min {
        return Err(BuildError::new(
            "max",
            format!("must be at least `min` ({min}), got {max}"),
        ));
    }
    if initial < min || initial > max {
        return Err(BuildError::new(
            "initial",
            format!("must be within [min, max] = [{min}, {max}], got {initial}"),
        ));
    }
    Ok(())
}

/// Checks `low <= value < high` (and that `value` is a number), naming the setting.
pub(crate) fn check_range(
    setting: &'static str,
    value: f64,
    low: f64,
    high: f64,
    why: &str,
) -> Result<(), BuildError> {
    if value.is_finite() && value >= low && value < high {
        Ok(())
    } else {
        Err(BuildError::new(setting, format!("{why}; got {value}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_name_the_bad_setting() {
        let cases: Vec<(Result<Limit, BuildError>, &str)> = vec![
            (Limit::adaptive_builder().min(0).build(), "min"),
            (Limit::adaptive_builder().min(5).max(4).build(), "max"),
            (Limit::adaptive_builder().initial(0).build(), "initial"),
            (
                Limit::adaptive_builder().max(3).initial(4).build(),
                "initial",
            ),
            (
                Limit::adaptive_builder().tolerance(0.9).build(),
                "tolerance",
            ),
            (
                Limit::adaptive_builder().tolerance(f64::NAN).build(),
                "tolerance",
            ),
            (Limit::adaptive_builder().gain(0.0).build(), "gain"),
            (Limit::adaptive_builder().gain(1.5).build(), "gain"),
            (Limit::adaptive_builder().gain(f64::NAN).build(), "gain"),
            (
                Limit::adaptive_builder().gain(f64::INFINITY).build(),
                "gain",
            ),
            (
                Limit::adaptive_builder().smoothing(0.0).build(),
                "smoothing",
            ),
            (
                Limit::adaptive_builder().smoothing(1.5).build(),
                "smoothing",
            ),
            (
                Limit::adaptive_builder()
                    .probe_interval(std::time::Duration::ZERO)
                    .build(),
                "probe_interval",
            ),
            (
                Limit::adaptive_builder().probe_jitter(-0.1).build(),
                "probe_jitter",
            ),
            (
                Limit::adaptive_builder()
                    .probe_interval(std::time::Duration::MAX)
                    .build(),
                "probe_interval",
            ),
            (
                Limit::adaptive_builder().tolerance(f64::INFINITY).build(),
                "tolerance",
            ),
            (
                Limit::adaptive_builder().tolerance(1e300).build(),
                "tolerance",
            ),
            (
                Limit::adaptive_builder().probe_jitter(f64::NAN).build(),
                "probe_jitter",
            ),
            (
                Limit::adaptive_builder()
                    .slo(std::time::Duration::ZERO)
                    .build(),
                "slo",
            ),
            (
                Limit::aimd_builder().backoff_ratio(f64::NAN).build(),
                "backoff_ratio",
            ),
            (
                Limit::vegas_builder().smoothing(f64::INFINITY).build(),
                "smoothing",
            ),
            (
                Limit::gradient2_builder().smoothing(0.0).build(),
                "smoothing",
            ),
            (
                Limit::gradient2_builder().tolerance(1e300).build(),
                "tolerance",
            ),
            (
                Limit::aimd_builder().backoff_ratio(1.0).build(),
                "backoff_ratio",
            ),
            (
                Limit::aimd_builder().backoff_ratio(0.4).build(),
                "backoff_ratio",
            ),
            (
                Limit::aimd_builder()
                    .timeout(std::time::Duration::ZERO)
                    .build(),
                "timeout",
            ),
            (Limit::aimd_builder().min(30).build(), "initial"),
            (
                Limit::vegas_builder().probe_multiplier(0).build(),
                "probe_multiplier",
            ),
            (Limit::vegas_builder().max(10).build(), "initial"),
            (
                Limit::gradient2_builder().long_window(0).build(),
                "long_window",
            ),
            (
                Limit::gradient2_builder().tolerance(0.5).build(),
                "tolerance",
            ),
        ];
        for (result, setting) in cases {
            let err = result.expect_err(setting);
            assert_eq!(err.setting(), setting, "{err}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn defaults_build_and_start_within_bounds() {
        for limit in [
            Limit::adaptive(),
            Limit::aimd(),
            Limit::vegas(),
            Limit::gradient2(),
            Limit::fixed(7),
        ] {
            limit.validate().unwrap();
            assert!(limit.initial() >= 1);
        }
        assert_eq!(Limit::aimd().initial(), 20);
        assert_eq!(Limit::fixed(7).initial(), 7);
        assert!(Limit::fixed(7).is_fixed() && !Limit::adaptive().is_fixed());
    }

    #[test]
    fn adaptive_initial_defaults_to_parallelism_within_bounds() {
        let limit = Limit::adaptive_builder().min(100).max(200).build().unwrap();
        assert_eq!(limit.initial(), 100);
        let limit = Limit::adaptive_builder().max(1).build().unwrap();
        assert_eq!(limit.initial(), 1);
    }
}
