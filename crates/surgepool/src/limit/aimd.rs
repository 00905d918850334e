//! AIMD: additive increase, multiplicative decrease on loss. A port of Netflix
//! concurrency-limits' `AIMDLimit.java` (see `README.md` beside this file).

use std::time::Duration;

use super::algorithm::{Algorithm, Sample};
use super::{check_bounds, check_range, Config, Limit};
use crate::error::BuildError;

/// Settings of [`Limit::aimd`]; the defaults are Netflix's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AimdConfig {
    pub(crate) initial: usize,
    pub(crate) min: usize,
    pub(crate) max: usize,
    pub(crate) backoff_ratio: f64,
    pub(crate) timeout: Duration,
}

impl Default for AimdConfig {
    fn default() -> Self {
        AimdConfig {
            initial: 20,
            min: 20,
            max: 200,
            backoff_ratio: 0.9,
            timeout: Duration::from_secs(5),
        }
    }
}

impl AimdConfig {
    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        check_bounds(self.min, self.initial, self.max)?;
        check_range(
            "backoff_ratio",
            self.backoff_ratio,
            0.5,
            1.0,
            "must be in [0.5, 1.0): the share of the limit kept after a drop",
        )?;
        if self.timeout.is_zero() {
            return Err(BuildError::new(
                "timeout",
                "must be positive: a job slower than this counts as dropped",
            ));
        }
        Ok(())
    }
}

/// Builds a [`Limit::aimd`] with other settings. Defaults are Netflix's `AIMDLimit`:
/// initial 20, min 20, max 200, backoff ratio 0.9, timeout 5 s.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use surgepool::Limit;
///
/// let limit = Limit::aimd_builder()
///     .min(1)
///     .initial(10)
///     .max(1_000)
///     .backoff_ratio(0.8)
///     .timeout(Duration::from_millis(250))
///     .build()?;
/// # Ok::<(), surgepool::BuildError>(())
/// ```
#[derive(Debug, Clone)]
pub struct AimdBuilder {
    config: AimdConfig,
}

impl AimdBuilder {
    pub(crate) fn new() -> Self {
        AimdBuilder {
            config: AimdConfig::default(),
        }
    }

    /// The limit before any sample (default 20).
    ///
    /// See the [example on `AimdBuilder`](AimdBuilder#examples).
    pub fn initial(mut self, n: usize) -> Self {
        self.config.initial = n;
        self
    }

    /// The limit never goes below this (default 20; at least 1).
    ///
    /// See the [example on `AimdBuilder`](AimdBuilder#examples).
    pub fn min(mut self, n: usize) -> Self {
        self.config.min = n;
        self
    }

    /// The limit never goes above this (default 200).
    ///
    /// See the [example on `AimdBuilder`](AimdBuilder#examples).
    pub fn max(mut self, n: usize) -> Self {
        self.config.max = n;
        self
    }

    /// The share of the limit kept after a drop, in `[0.5, 1.0)` (default 0.9).
    ///
    /// See the [example on `AimdBuilder`](AimdBuilder#examples).
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.config.backoff_ratio = ratio;
        self
    }

    /// A job that held its permit longer than this counts as dropped (default 5 s). Must be
    /// positive; it is only compared, never added to, so `Duration::MAX` ("never") is fine.
    ///
    /// See the [example on `AimdBuilder`](AimdBuilder#examples).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the setting when one is out of range or `min <= initial <=
    /// max` does not hold.
    ///
    /// See the [example on `AimdBuilder`](AimdBuilder#examples).
    pub fn build(self) -> Result<Limit, BuildError> {
        self.config.validate()?;
        Ok(Limit {
            config: Config::Aimd(self.config),
        })
    }
}

/// The live AIMD state.
#[derive(Debug)]
pub(crate) struct Aimd {
    config: AimdConfig,
    limit: usize,
}

impl Aimd {
    pub(crate) fn new(config: AimdConfig) -> Self {
        Aimd {
            config,
            limit: config.initial,
        }
    }
}

impl Algorithm for Aimd {
    fn update(&mut self, sample: &Sample) -> usize {
        let c = &self.config;
        if sample.dropped || sample.rtt > c.timeout {
            self.limit = (self.limit as f64 * c.backoff_ratio) as usize;
        } else if sample.in_flight * 2 >= self.limit {
            // Only grow when the limit is actually in use ("app limited" guard).
            self.limit = self.limit.saturating_add(1);
        }
        self.limit = self.limit.clamp(c.min, c.max);
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn sample(rtt_ms: u64, in_flight: usize, dropped: bool) -> Sample {
        Sample {
            now: Instant::now(),
            rtt: Duration::from_millis(rtt_ms),
            in_flight,
            dropped,
            refused: 0,
        }
    }

    #[test]
    fn grows_by_one_when_used_and_backs_off_on_drop_or_timeout() {
        let mut aimd = Aimd::new(AimdConfig {
            min: 1,
            initial: 10,
            ..AimdConfig::default()
        });
        assert_eq!(aimd.update(&sample(10, 5, false)), 11);
        assert_eq!(
            aimd.update(&sample(10, 2, false)),
            11,
            "app limited: no growth"
        );
        assert_eq!(aimd.update(&sample(10, 11, true)), 9, "11 * 0.9 = 9.9 -> 9");
        assert_eq!(
            aimd.update(&sample(6_000, 9, false)),
            8,
            "slower than the timeout"
        );
    }

    #[test]
    fn stays_within_bounds() {
        let mut aimd = Aimd::new(AimdConfig {
            min: 5,
            initial: 6,
            max: 7,
            ..AimdConfig::default()
        });
        for _ in 0..10 {
            aimd.update(&sample(1, 100, false));
        }
        assert_eq!(aimd.limit, 7);
        for _ in 0..10 {
            aimd.update(&sample(1, 100, true));
        }
        assert_eq!(aimd.limit, 5);
    }
}
