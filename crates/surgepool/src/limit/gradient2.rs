//! Gradient2: compare each RTT with a long exponential average of RTTs. A port of Netflix
//! concurrency-limits' `Gradient2Limit.java` (see `README.md` beside this file).

use super::algorithm::{whole, Algorithm, Sample};
use super::{check_bounds, check_range, Config, Limit};
use crate::error::BuildError;

/// Settings of [`Limit::gradient2`]; the defaults are Netflix's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Gradient2Config {
    pub(crate) initial: usize,
    pub(crate) min: usize,
    pub(crate) max: usize,
    pub(crate) smoothing: f64,
    pub(crate) queue_size: usize,
    pub(crate) long_window: usize,
    pub(crate) tolerance: f64,
}

impl Default for Gradient2Config {
    fn default() -> Self {
        Gradient2Config {
            initial: 20,
            min: 20,
            max: 200,
            smoothing: 0.2,
            queue_size: 4,
            long_window: 600,
            tolerance: 1.5,
        }
    }
}

impl Gradient2Config {
    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        check_bounds(self.min, self.initial, self.max)?;
        check_range(
            "smoothing",
            self.smoothing,
            f64::MIN_POSITIVE,
            1.0 + f64::EPSILON,
            "must be in (0, 1]: the weight of a new estimate (1 = no smoothing)",
        )?;
        check_range(
            "tolerance",
            self.tolerance,
            1.0,
            super::adaptive_config::MAX_TOLERANCE * (1.0 + f64::EPSILON),
            "must be a ratio in [1, 100]: how much slower than the long-term RTT is tolerated",
        )?;
        if self.long_window == 0 {
            return Err(BuildError::new(
                "long_window",
                "must be at least 1 sample: the span of the long-term RTT average",
            ));
        }
        Ok(())
    }
}

/// Builds a [`Limit::gradient2`] with other settings. Defaults are Netflix's
/// `Gradient2Limit`: initial 20, min 20, max 200, smoothing 0.2, queue size 4, long window
/// 600 samples, RTT tolerance 1.5.
///
/// # Examples
///
/// ```
/// use surgepool::Limit;
///
/// let limit = Limit::gradient2_builder()
///     .min(1)
///     .initial(10)
///     .max(2_000)
///     .tolerance(1.2)
///     .build()?;
/// # Ok::<(), surgepool::BuildError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Gradient2Builder {
    config: Gradient2Config,
}

impl Gradient2Builder {
    pub(crate) fn new() -> Self {
        Gradient2Builder {
            config: Gradient2Config::default(),
        }
    }

    /// The limit before any sample (default 20).
    ///
    /// See the [example on `Gradient2Builder`](Gradient2Builder#examples).
    pub fn initial(mut self, n: usize) -> Self {
        self.config.initial = n;
        self
    }

    /// The limit never goes below this (default 20; at least 1).
    ///
    /// See the [example on `Gradient2Builder`](Gradient2Builder#examples).
    pub fn min(mut self, n: usize) -> Self {
        self.config.min = n;
        self
    }

    /// The limit never goes above this (Netflix's `maxConcurrency`, default 200).
    ///
    /// See the [example on `Gradient2Builder`](Gradient2Builder#examples).
    pub fn max(mut self, n: usize) -> Self {
        self.config.max = n;
        self
    }

    /// Weight of a new estimate in `(0, 1]` (default 0.2).
    ///
    /// See the [example on `Gradient2Builder`](Gradient2Builder#examples).
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.config.smoothing = smoothing;
        self
    }

    /// How much the limit may grow per sample while latency is fine (default 4).
    ///
    /// See the [example on `Gradient2Builder`](Gradient2Builder#examples).
    pub fn queue_size(mut self, n: usize) -> Self {
        self.config.queue_size = n;
        self
    }

    /// Span in samples of the long-term RTT average (default 600).
    ///
    /// See the [example on `Gradient2Builder`](Gradient2Builder#examples).
    pub fn long_window(mut self, samples: usize) -> Self {
        self.config.long_window = samples;
        self
    }

    /// RTT ratio (current / long-term) tolerated before the limit shrinks, `>= 1.0`
    /// (default 1.5).
    ///
    /// See the [example on `Gradient2Builder`](Gradient2Builder#examples).
    pub fn tolerance(mut self, ratio: f64) -> Self {
        self.config.tolerance = ratio;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the setting when one is out of range.
    ///
    /// See the [example on `Gradient2Builder`](Gradient2Builder#examples).
    pub fn build(self) -> Result<Limit, BuildError> {
        self.config.validate()?;
        Ok(Limit {
            config: Config::Gradient2(self.config),
        })
    }
}

/// Netflix's `ExpAvgMeasurement`: a plain average over a warm-up, then an exponential
/// average with factor `2 / (window + 1)`.
#[derive(Debug)]
struct ExpAvg {
    value: f64,
    sum: f64,
    count: usize,
    window: usize,
}

const WARMUP_SAMPLES: usize = 10;

impl ExpAvg {
    fn add(&mut self, sample: f64) -> f64 {
        if self.count < WARMUP_SAMPLES {
            self.count += 1;
            self.sum += sample;
            self.value = self.sum / self.count as f64;
        } else {
            let factor = 2.0 / (self.window as f64 + 1.0);
            self.value = self.value * (1.0 - factor) + sample * factor;
        }
        self.value
    }
}

/// The live Gradient2 state.
#[derive(Debug)]
pub(crate) struct Gradient2 {
    config: Gradient2Config,
    estimated: f64,
    long_rtt: ExpAvg,
}

impl Gradient2 {
    pub(crate) fn new(config: Gradient2Config) -> Self {
        Gradient2 {
            config,
            estimated: config.initial as f64,
            long_rtt: ExpAvg {
                value: 0.0,
                sum: 0.0,
                count: 0,
                window: config.long_window,
            },
        }
    }
}

impl Gradient2 {
    /// The whole limit, rounded down and then clamped (rounding must not leave the bounds).
    fn limit(&self) -> usize {
        whole(self.estimated, self.config.min, self.config.max)
    }
}

impl Algorithm for Gradient2 {
    fn update(&mut self, sample: &Sample) -> usize {
        let c = self.config;
        let short = sample.rtt.as_secs_f64();
        if short <= 0.0 {
            // A zero-length job would divide by zero below and says nothing about queueing.
            return self.limit();
        }
        let queue_size = c.queue_size as f64;
        let long = self.long_rtt.add(short);

        // After a long overload the long-term RTT can sit far above the current one; pull it
        // down faster than the exponential average would.
        if long / short > 2.0 {
            self.long_rtt.value *= 0.95;
        }

        // App limited: do not move while the limit is not in use.
        if (sample.in_flight as f64) < self.estimated / 2.0 {
            return self.limit();
        }

        let gradient = (c.tolerance * long / short).clamp(0.5, 1.0);
        let new_limit = self.estimated * gradient + queue_size;
        let new_limit = self.estimated * (1.0 - c.smoothing) + new_limit * c.smoothing;
        self.estimated = new_limit.clamp(c.min as f64, c.max as f64);
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
    fn grows_by_smoothed_queue_size_while_latency_is_steady() {
        let mut g = Gradient2::new(Gradient2Config::default());
        // gradient 1 (clamped): 20 * 0.8 + (20 + 4) * 0.2 = 20.8
        assert_eq!(g.update(&sample(10, 20)), 20);
        assert!((g.estimated - 20.8).abs() < 1e-9);
    }

    #[test]
    fn shrinks_when_latency_jumps_past_tolerance() {
        let mut g = Gradient2::new(Gradient2Config {
            min: 1,
            ..Gradient2Config::default()
        });
        for _ in 0..20 {
            g.update(&sample(10, 100));
        }
        let before = g.estimated;
        g.update(&sample(100, 100));
        assert!(g.estimated < before, "{} -> {}", before, g.estimated);
    }
}
