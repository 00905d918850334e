//! Vegas: estimate the queue from the ratio of the no-load RTT to the current RTT, as TCP
//! Vegas does. A port of Netflix concurrency-limits' `VegasLimit.java` (see `README.md`).

use super::algorithm::{whole, Algorithm, Rng, Sample};
use super::{check_bounds, check_range, Config, Limit};
use crate::error::BuildError;

/// Settings of [`Limit::vegas`]; the defaults are Netflix's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct VegasConfig {
    pub(crate) initial: usize,
    pub(crate) min: usize,
    pub(crate) max: usize,
    pub(crate) smoothing: f64,
    pub(crate) probe_multiplier: usize,
}

impl Default for VegasConfig {
    fn default() -> Self {
        VegasConfig {
            initial: 20,
            min: 1,
            max: 1000,
            smoothing: 1.0,
            probe_multiplier: 30,
        }
    }
}

impl VegasConfig {
    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        check_bounds(self.min, self.initial, self.max)?;
        check_range(
            "smoothing",
            self.smoothing,
            f64::MIN_POSITIVE,
            1.0 + f64::EPSILON,
            "must be in (0, 1]: the weight of a new estimate (1 = no smoothing)",
        )?;
        if self.probe_multiplier == 0 {
            return Err(BuildError::new(
                "probe_multiplier",
                "must be at least 1: the no-load RTT is re-probed every ~multiplier x limit samples",
            ));
        }
        Ok(())
    }
}

/// Builds a [`Limit::vegas`] with other settings. Defaults are Netflix's `VegasLimit`:
/// initial 20, max 1000, smoothing 1.0, probe multiplier 30 (and min 1).
///
/// # Examples
///
/// ```
/// use surgepool::Limit;
///
/// let limit = Limit::vegas_builder().initial(4).max(5_000).smoothing(0.5).build()?;
/// # Ok::<(), surgepool::BuildError>(())
/// ```
#[derive(Debug, Clone)]
pub struct VegasBuilder {
    config: VegasConfig,
}

impl VegasBuilder {
    pub(crate) fn new() -> Self {
        VegasBuilder {
            config: VegasConfig::default(),
        }
    }

    /// The limit before any sample (default 20).
    ///
    /// See the [example on `VegasBuilder`](VegasBuilder#examples).
    pub fn initial(mut self, n: usize) -> Self {
        self.config.initial = n;
        self
    }

    /// The limit never goes below this (default 1).
    ///
    /// See the [example on `VegasBuilder`](VegasBuilder#examples).
    pub fn min(mut self, n: usize) -> Self {
        self.config.min = n;
        self
    }

    /// The limit never goes above this (Netflix's `maxConcurrency`, default 1000).
    ///
    /// See the [example on `VegasBuilder`](VegasBuilder#examples).
    pub fn max(mut self, n: usize) -> Self {
        self.config.max = n;
        self
    }

    /// Weight of a new estimate in `(0, 1]` (default 1.0: no smoothing).
    ///
    /// See the [example on `VegasBuilder`](VegasBuilder#examples).
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.config.smoothing = smoothing;
        self
    }

    /// The no-load RTT is re-probed every `multiplier × limit` samples, jittered by
    /// 0.5–1× (default 30).
    ///
    /// See the [example on `VegasBuilder`](VegasBuilder#examples).
    pub fn probe_multiplier(mut self, multiplier: usize) -> Self {
        self.config.probe_multiplier = multiplier;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the setting when one is out of range.
    ///
    /// See the [example on `VegasBuilder`](VegasBuilder#examples).
    pub fn build(self) -> Result<Limit, BuildError> {
        self.config.validate()?;
        Ok(Limit {
            config: Config::Vegas(self.config),
        })
    }
}

/// Netflix's `Log10RootFunction`: `max(1, ⌊log10 n⌋)` below 1000, `⌊√n⌋` from 1000 on (the
/// jump from 2 to 31 at 1000 is theirs, kept for fidelity).
fn log10_root(n: usize) -> f64 {
    if n < 1000 {
        (n.max(1) as f64).log10().floor().max(1.0)
    } else {
        (n as f64).sqrt().floor()
    }
}

/// The live Vegas state.
#[derive(Debug)]
pub(crate) struct Vegas {
    config: VegasConfig,
    estimated: f64,
    /// Seconds; 0 until the first sample.
    rtt_noload: f64,
    probe_count: usize,
    probe_jitter: f64,
    rng: Rng,
}

impl Vegas {
    pub(crate) fn new(config: VegasConfig) -> Self {
        let mut rng = Rng::new();
        let probe_jitter = 0.5 + 0.5 * rng.next_f64();
        Vegas {
            config,
            estimated: config.initial as f64,
            rtt_noload: 0.0,
            probe_count: 0,
            probe_jitter,
            rng,
        }
    }

    /// The whole limit: rounded down, then clamped, as smoothing can leave the estimate a
    /// hair below `min` (0.7 × 3 + 0.3 × 3 = 2.999…, which truncated to 2).
    fn limit(&self) -> usize {
        whole(self.estimated, self.config.min, self.config.max)
    }
}

impl Algorithm for Vegas {
    fn update(&mut self, sample: &Sample) -> usize {
        let rtt = sample.rtt.as_secs_f64();
        if rtt <= 0.0 {
            // Netflix rejects rtt == 0 with an exception; a zero-length job says nothing.
            return self.limit();
        }
        let c = self.config;
        self.probe_count += 1;
        if self.probe_jitter * (c.probe_multiplier as f64) * self.estimated
            <= self.probe_count as f64
        {
            // Periodic "probe": take the current RTT as the new no-load RTT.
            self.probe_jitter = 0.5 + 0.5 * self.rng.next_f64();
            self.probe_count = 0;
            self.rtt_noload = rtt;
            return self.limit();
        }
        if self.rtt_noload == 0.0 || rtt < self.rtt_noload {
            self.rtt_noload = rtt;
            return self.limit();
        }

        let estimated = self.estimated;
        let queue = (estimated * (1.0 - self.rtt_noload / rtt)).ceil();
        let log = log10_root(estimated as usize);
        let new_limit = if sample.dropped {
            estimated - log
        } else if ((sample.in_flight * 2) as f64) < estimated {
            // App limited: no upward drift while the limit is not in use.
            return self.limit();
        } else {
            let (alpha, beta, threshold) = (3.0 * log, 6.0 * log, log);
            if queue <= threshold {
                estimated + beta
            } else if queue < alpha {
                estimated + log
            } else if queue > beta {
                estimated - log
            } else {
                return self.limit();
            }
        };
        let new_limit = new_limit.clamp(c.min as f64, c.max as f64);
        self.estimated = (1.0 - c.smoothing) * estimated + c.smoothing * new_limit;
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::Instant;

    fn sample(rtt_ms: u64, in_flight: usize) -> Sample {
        Sample {
            now: Instant::now(),
            rtt: Duration::from_millis(rtt_ms),
            in_flight,
            dropped: false,
            refused: 0,
        }
    }

    #[test]
    fn log10_root_matches_netflix() {
        assert_eq!(log10_root(0), 1.0);
        assert_eq!(log10_root(9), 1.0);
        assert_eq!(log10_root(20), 1.0);
        assert_eq!(log10_root(100), 2.0);
        assert_eq!(log10_root(999), 2.0);
        assert_eq!(log10_root(1000), 31.0);
    }

    #[test]
    fn grows_by_beta_without_queue_and_shrinks_with_one() {
        let mut vegas = Vegas::new(VegasConfig::default());
        vegas.probe_jitter = 1e9; // no probe in this test
        assert_eq!(
            vegas.update(&sample(10, 20)),
            20,
            "first sample sets rtt_noload"
        );
        assert_eq!(vegas.update(&sample(10, 20)), 26, "no queue: +beta (6)");
        // queue = ceil(26 * (1 - 10/20)) = 13 > beta (6): -log (1)
        assert_eq!(vegas.update(&sample(20, 26)), 25);
        // app limited: unchanged
        assert_eq!(vegas.update(&sample(20, 3)), 25);
    }
}
