//! The settings of [`Limit::adaptive`] and their builder; the controller itself is in
//! `adaptive/`.

use std::time::Duration;

use super::{check_bounds, check_range, Config, Limit};
use crate::error::BuildError;

/// The default upper bound: generous enough for waiting work on a large machine, small
/// enough that a runaway limit cannot admit an unbounded amount of memory.
pub(crate) const DEFAULT_MAX: usize = 10_000;
/// The longest `probe_interval` accepted: a base re-measured less than once a day is not
/// re-measured in any useful sense, and the bound keeps the schedule's arithmetic finite.
pub(crate) const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
/// The largest `tolerance` accepted: past 100× the base RTT the latency guard would never act.
pub(crate) const MAX_TOLERANCE: f64 = 100.0;

/// Settings of [`Limit::adaptive`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AdaptiveConfig {
    pub(crate) min: usize,
    pub(crate) max: usize,
    pub(crate) initial: Option<usize>,
    pub(crate) tolerance: f64,
    pub(crate) gain: f64,
    pub(crate) smoothing: f64,
    pub(crate) probe_interval: Duration,
    pub(crate) probe_jitter: f64,
    /// The latency objective the caller stated, if any (see [`AdaptiveBuilder::slo`]).
    pub(crate) slo: Option<Duration>,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig {
            min: 1,
            max: DEFAULT_MAX,
            initial: None,
            tolerance: 1.75,
            gain: 0.5,
            smoothing: 0.5,
            probe_interval: Duration::from_secs(10),
            probe_jitter: 0.15,
            slo: None,
        }
    }
}

impl AdaptiveConfig {
    /// The starting limit: the machine's parallelism unless set, within `[min, max]`.
    pub(crate) fn initial(&self) -> usize {
        self.initial.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, usize::from)
                .clamp(self.min.max(1), self.max.max(self.min.max(1)))
        })
    }

    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        check_bounds(self.min, self.initial(), self.max)?;
        check_range(
            "tolerance",
            self.tolerance,
            1.0,
            MAX_TOLERANCE * (1.0 + f64::EPSILON),
            "must be a ratio in [1, 100]: how much slower than the base RTT is tolerated",
        )?;
        check_range(
            "gain",
            self.gain,
            0.01,
            1.0 + f64::EPSILON,
            "must be in [0.01, 1]: the share of a move's proportional goodput change it must win",
        )?;
        check_range(
            "smoothing",
            self.smoothing,
            f64::MIN_POSITIVE,
            1.0 + f64::EPSILON,
            "must be in (0, 1]: the share of a latency cut applied at once (1 = all of it)",
        )?;
        if self.probe_interval < Duration::from_millis(1)
            || self.probe_interval > MAX_PROBE_INTERVAL
        {
            return Err(BuildError::new(
                "probe_interval",
                format!(
                    "must be between 1 ms and 24 h: how often the base RTT is re-measured; got {:?}",
                    self.probe_interval
                ),
            ));
        }
        if self.slo == Some(Duration::ZERO) {
            return Err(BuildError::new(
                "slo",
                "must be more than zero: the time a job may hold its slot and still count as \
                 served in time"
                    .to_string(),
            ));
        }
        check_range(
            "probe_jitter",
            self.probe_jitter,
            0.0,
            1.0 + f64::EPSILON,
            "must be in [0, 1]: the random extra delay of a re-measure, as a share of the interval",
        )
    }
}

/// Builds a [`Limit::adaptive`] with other settings.
///
/// Every setting has a default that needs no tuning; the knobs exist for bounds you must
/// respect (a database that allows 50 connections) and for experiments.
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `min` | 1 | the limit never goes below |
/// | `max` | 10 000 | the limit never goes above |
/// | `initial` | available parallelism | the limit before any sample |
/// | `tolerance` | 1.75 | RTT / base RTT above which the limit is cut |
/// | `gain` | 0.5 | share of a move's proportional goodput change it must win |
/// | `smoothing` | 0.5 | share of the first latency cut of a run applied at once |
/// | `probe_interval` | 10 s | how often the base RTT is re-measured at half the limit |
/// | `probe_jitter` | 0.15 | random extra delay of a re-measure, share of the interval |
/// | `slo` | none | the latency objective: climb for the jobs served within it |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use surgepool::Limit;
///
/// let limit = Limit::adaptive_builder()
///     .min(2)
///     .max(500)
///     .tolerance(1.5)
///     .probe_interval(Duration::from_secs(30))
///     .build()?;
///
/// // Settings that cannot work are errors, never panics:
/// let err = Limit::adaptive_builder().min(10).max(5).build().unwrap_err();
/// assert_eq!(err.setting(), "max");
/// # Ok::<(), surgepool::BuildError>(())
/// ```
#[derive(Debug, Clone)]
pub struct AdaptiveBuilder {
    config: AdaptiveConfig,
}

impl AdaptiveBuilder {
    pub(crate) fn new() -> Self {
        AdaptiveBuilder {
            config: AdaptiveConfig::default(),
        }
    }

    /// The limit never goes below this (default 1).
    ///
    /// See the [example on `AdaptiveBuilder`](AdaptiveBuilder#examples).
    pub fn min(mut self, n: usize) -> Self {
        self.config.min = n;
        self
    }

    /// The limit never goes above this (default 10 000).
    ///
    /// See the [example on `AdaptiveBuilder`](AdaptiveBuilder#examples).
    pub fn max(mut self, n: usize) -> Self {
        self.config.max = n;
        self
    }

    /// The limit before any sample (default: the machine's available parallelism, within
    /// `[min, max]`).
    ///
    /// See the [example on `AdaptiveBuilder`](AdaptiveBuilder#examples).
    pub fn initial(mut self, n: usize) -> Self {
        self.config.initial = Some(n);
        self
    }

    /// The ratio of mean RTT to base RTT above which the limit is cut, in `[1, 100]`
    /// (default 1.75). Lower reacts sooner and to more noise, and settles lower where the
    /// latency rises gradually before goodput stops growing (Envoy's 1.25 left about 10 %
    /// of the lab's sleep-work goodput behind, 1.5 about 7 % more than 1.75; higher, 2.5
    /// took the lab's p99 past 3× the service time; see `limit/README.md`).
    ///
    /// See the [example on `AdaptiveBuilder`](AdaptiveBuilder#examples).
    pub fn tolerance(mut self, ratio: f64) -> Self {
        self.config.tolerance = ratio;
        self
    }

    /// The hill climber's bar, in `[0.01, 1]` (default 0.5): a move of the limit by a share
    /// `c` is kept only if goodput followed by at least `gain × c` (up: rose by that much;
    /// down: fell by no more). The limit settles where one more slot buys `gain` of its
    /// proportional share of goodput: lower settles higher, nearer where goodput stops
    /// growing, at the price of more latency and longer measurements.
    ///
    /// See the [example on `AdaptiveBuilder`](AdaptiveBuilder#examples).
    pub fn gain(mut self, gain: f64) -> Self {
        self.config.gain = gain;
        self
    }

    /// The share of the first latency cut of a run applied at once, in `(0, 1]` (default
    /// 0.5). A second window in a row above tolerance confirms the queue, and its cut goes
    /// all the way to the limit at which the queue would vanish.
    ///
    /// See the [example on `AdaptiveBuilder`](AdaptiveBuilder#examples).
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.config.smoothing = smoothing;
        self
    }

    /// How often the base RTT is re-measured at half the limit (default 10 s).
    ///
    /// See the [example on `AdaptiveBuilder`](AdaptiveBuilder#examples).
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.config.probe_interval = interval;
        self
    }

    /// Random extra delay of each re-measure, as a share of the interval, in `[0, 1]`
    /// (default 0.15, as Envoy). Keeps many limiters from re-measuring in lock-step.
    ///
    /// See the [example on `AdaptiveBuilder`](AdaptiveBuilder#examples).
    pub fn probe_jitter(mut self, jitter: f64) -> Self {
        self.config.probe_jitter = jitter;
        self
    }

    /// The latency objective of a job's time in its slot, if you know it (default: none).
    ///
    /// Without it the limit settles where one more slot stops buying half of its
    /// proportional share of goodput ([`gain`](Self::gain)): the knee, where latency starts
    /// to rise. Where goodput still grows past that knee, slowly and at a higher latency (a
    /// machine whose memory bandwidth, not its cores, runs out first; work that half waits
    /// and half computes), a limit a little above it serves more requests within a
    /// latency objective. Given the objective, the hill climber counts as goodput only the
    /// jobs that finished within it, and keeps a move that wins a fifth of what it asks for
    /// without one (`gain / 5`: 0.1 by default): the limit climbs while more slots still
    /// serve more jobs in time, and stops where the jobs past the objective cost more than
    /// the extra slots win. The latency guard ([`tolerance`](Self::tolerance)) still cuts a
    /// queue. An objective no job can meet (below the work's own unloaded time) is ignored
    /// until the work gets faster.
    ///
    /// Measure from when the job takes its slot, as the limiter does; leave room for what
    /// your callers also wait for (a queue in front, the network). `Duration::ZERO` is an
    /// error; any other value, however large, is accepted.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use surgepool::Limit;
    ///
    /// // Requests take about 20 ms unloaded; answers within 60 ms count.
    /// let limit = Limit::adaptive_builder().slo(Duration::from_millis(60)).build()?;
    /// # let _ = limit;
    /// let err = Limit::adaptive_builder().slo(Duration::ZERO).build().unwrap_err();
    /// assert_eq!(err.setting(), "slo");
    /// # Ok::<(), surgepool::BuildError>(())
    /// ```
    pub fn slo(mut self, slo: Duration) -> Self {
        self.config.slo = Some(slo);
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the setting when one is out of range or `min <= initial <=
    /// max` does not hold.
    ///
    /// See the [example on `AdaptiveBuilder`](AdaptiveBuilder#examples).
    pub fn build(self) -> Result<Limit, BuildError> {
        self.config.validate()?;
        Ok(Limit {
            config: Config::Adaptive(self.config),
        })
    }
}
