//! The strategies under test, their names and their settings.

use std::fmt;
use std::time::Duration;

/// Seed 003's pool: `WithMaxWorkers(5000)`.
pub(crate) const SEED_LIMIT: usize = 5000;
/// Seed 003's pool: `WithQueueSize(100000)`.
pub(crate) const SEED_QUEUE: usize = 100_000;
/// tower's `ConcurrencyLimit` needs a number; a user copying the seed picks the same 5000.
pub(crate) const TOWER_LIMIT: usize = SEED_LIMIT;

/// Our recommended configuration for the adaptive pool under overload, also used by the
/// swept `fixed_<N>` runs so that the sweep compares limits alone.
///
/// Under sustained overload any FIFO queue is always full, so every request that runs first
/// waits about as long as the queue lets it: a queue that holds work for one service time
/// doubles the latency of everything served (seed 003's pool: 100,000 slots, 8× the service
/// time in mean latency). A queue is only for bursts shorter than a few milliseconds, so:
/// a small queue, and a queue timeout of CoDel's target delay (RFC 8289: 5 ms), after which
/// waiting work is shed instead of run late. Neither number depends on the machine or the
/// work: the limit (adaptive) is what finds the machine's concurrency.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueuePolicy {
    /// Queue slots.
    pub(crate) capacity: usize,
    /// Waiting longer than this sheds the task (`None`: never).
    pub(crate) timeout: Option<Duration>,
}

/// The recommended queue.
pub(crate) const RECOMMENDED_QUEUE: QueuePolicy = QueuePolicy {
    capacity: 64,
    timeout: Some(Duration::from_millis(5)),
};

/// One strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// `tokio::spawn` per request, no bound: seed 003's "just spawn and hope".
    Naive,
    /// surgepool `Pool` with seed 003's settings: fixed limit 5000, queue 100,000.
    Fixed,
    /// tower `LoadShed<ConcurrencyLimit<service_fn>>` with limit 5000.
    Tower,
    /// surgepool `Pool` with `Limit::adaptive()` and the recommended queue.
    Adaptive,
    /// surgepool `Pool` with `Limit::fixed(n)` and the recommended queue (the sweep).
    FixedN(usize),
    /// surgepool `Pool` with `Limit::adaptive_builder()`, its `tolerance` and/or `gain` set
    /// (in hundredths; `None`: the default) and/or a latency objective `slo` (ms), and the
    /// recommended queue: the default's knobs, swept (`adaptive_tol<T>`, `adaptive_gain<G>`,
    /// `adaptive_slo<MS>`, or several joined by `_`: `adaptive_tol<T>_gain<G>`).
    AdaptiveTuned {
        tolerance: Option<u32>,
        gain: Option<u32>,
        slo_ms: Option<u32>,
    },
    /// `Adaptive` with surgepool's `metrics` feature at work: a Prometheus recorder installed,
    /// a `metrics::Publisher` publishing the pool every 100 ms (ten times the usual rate) and
    /// the exposition rendered every second, as a scrape would. Run beside `adaptive` to see
    /// what the metrics cost.
    AdaptiveMetrics,
    /// surgepool `Pool` with `Limit::aimd()` (Netflix's AIMD anchor) and the recommended queue.
    Aimd,
    /// surgepool `Pool` with `Limit::vegas()` (Netflix's Vegas anchor) and the recommended queue.
    Vegas,
    /// surgepool `Pool` with `Limit::gradient2()` (Netflix's Gradient2 anchor) and the
    /// recommended queue.
    Gradient2,
}

/// The default strategies, in running order.
pub(crate) const DEFAULT: [Strategy; 4] = [
    Strategy::Naive,
    Strategy::Fixed,
    Strategy::Tower,
    Strategy::Adaptive,
];

/// The default sweep: powers of two from 1 to 4096.
pub(crate) fn default_sweep() -> Vec<usize> {
    (0..=12).map(|p| 1usize << p).collect()
}

impl Strategy {
    /// Parses `naive`, `fixed`, `tower`, `adaptive`, `aimd`, `vegas`, `gradient2`,
    /// `fixed_<N>` or `adaptive_tol<T>` (the adaptive limit with tolerance `T`, e.g. 1.5).
    pub(crate) fn parse(s: &str) -> Result<Strategy, String> {
        match s.trim() {
            "naive" => Ok(Strategy::Naive),
            "fixed" => Ok(Strategy::Fixed),
            "tower" => Ok(Strategy::Tower),
            "adaptive" => Ok(Strategy::Adaptive),
            "adaptive_metrics" => Ok(Strategy::AdaptiveMetrics),
            "aimd" => Ok(Strategy::Aimd),
            "vegas" => Ok(Strategy::Vegas),
            "gradient2" => Ok(Strategy::Gradient2),
            other => {
                if let Some(knobs) = other.strip_prefix("adaptive_") {
                    return parse_tuned(knobs).ok_or_else(|| {
                        format!(
                            "bad strategy `{other}`: expected adaptive_tol<T> (tolerance T in \
                             [1, 100], e.g. adaptive_tol1.5), adaptive_gain<G> (G in [0.01, 1]), \
                             adaptive_slo<MS> (a latency objective of MS whole milliseconds, 1 \
                             to 3,600,000) or several joined by `_`, e.g. adaptive_tol2_slo60"
                        )
                    });
                }
                match other.strip_prefix("fixed_").map(str::parse::<usize>) {
                    Some(Ok(n)) if n >= 1 => Ok(Strategy::FixedN(n)),
                    _ => Err(format!(
                        "unknown strategy `{other}`: expected naive, fixed, tower, adaptive, \
                         aimd, vegas, gradient2, fixed_<N> with N >= 1, adaptive_tol<T>, \
                         adaptive_gain<G>, adaptive_slo<MS> or adaptive_metrics"
                    )),
                }
            }
        }
    }

    /// Whether the strategy's limit is the default controller, `Limit::adaptive()` (with
    /// its knobs or not), whose decisions `--trace-limit` writes: the other limits write
    /// nothing, so no file is made for them.
    pub(crate) fn traces_decisions(self) -> bool {
        matches!(
            self,
            Strategy::Adaptive | Strategy::AdaptiveMetrics | Strategy::AdaptiveTuned { .. }
        )
    }

    /// Whether the strategy is a surgepool pool (its accounting is cross-checked and its
    /// `lost` must be 0).
    pub(crate) fn is_surgepool(self) -> bool {
        !matches!(self, Strategy::Naive | Strategy::Tower)
    }

    /// The limit this strategy's pool runs with (`None`: not a pool).
    pub(crate) fn limit(self) -> Option<surgepool::Limit> {
        use surgepool::Limit;
        Some(match self {
            Strategy::Naive | Strategy::Tower => return None,
            Strategy::Fixed => Limit::fixed(SEED_LIMIT),
            Strategy::Adaptive | Strategy::AdaptiveMetrics => Limit::adaptive(),
            Strategy::FixedN(n) => Limit::fixed(n),
            Strategy::AdaptiveTuned {
                tolerance,
                gain,
                slo_ms,
            } => {
                let mut b = Limit::adaptive_builder();
                if let Some(t) = tolerance {
                    b = b.tolerance(f64::from(t) / 100.0);
                }
                if let Some(g) = gain {
                    b = b.gain(f64::from(g) / 100.0);
                }
                if let Some(ms) = slo_ms {
                    b = b.slo(std::time::Duration::from_millis(u64::from(ms)));
                }
                b.build().ok()?
            }
            Strategy::Aimd => Limit::aimd(),
            Strategy::Vegas => Limit::vegas(),
            Strategy::Gradient2 => Limit::gradient2(),
        })
    }

    /// The settings, in words, for the table and the report.
    pub(crate) fn describe(self, q: QueuePolicy) -> String {
        let rec = match q.timeout {
            Some(t) => format!(
                "queue {} slots, queue timeout {} ms",
                q.capacity,
                t.as_secs_f64() * 1000.0
            ),
            None => format!("queue {} slots, no queue timeout", q.capacity),
        };
        match self {
            Strategy::Naive => "tokio::spawn per request, no bound".to_owned(),
            Strategy::Fixed => {
                format!("surgepool Pool, Limit::fixed({SEED_LIMIT}), queue {SEED_QUEUE} (seed 003)")
            }
            Strategy::Tower => format!(
                "tower LoadShed + ConcurrencyLimit({TOWER_LIMIT}) around service_fn, no queue"
            ),
            Strategy::Adaptive => format!("surgepool Pool, Limit::adaptive(), {rec}"),
            Strategy::AdaptiveMetrics => format!(
                "surgepool Pool, Limit::adaptive(), {rec}; metrics published every 100 ms to \
                 a Prometheus recorder, rendered every 1 s"
            ),
            Strategy::FixedN(n) => format!("surgepool Pool, Limit::fixed({n}), {rec}"),
            Strategy::AdaptiveTuned {
                tolerance,
                gain,
                slo_ms,
            } => {
                let mut knobs = String::new();
                if let Some(t) = tolerance {
                    knobs += &format!(".tolerance({})", f64::from(t) / 100.0);
                }
                if let Some(g) = gain {
                    knobs += &format!(".gain({})", f64::from(g) / 100.0);
                }
                if let Some(ms) = slo_ms {
                    knobs += &format!(".slo({ms} ms)");
                }
                format!("surgepool Pool, Limit::adaptive_builder(){knobs}, {rec}")
            }
            Strategy::Aimd => format!("surgepool Pool, Limit::aimd() (Netflix AIMD), {rec}"),
            Strategy::Vegas => format!("surgepool Pool, Limit::vegas() (Netflix Vegas), {rec}"),
            Strategy::Gradient2 => {
                format!("surgepool Pool, Limit::gradient2() (Netflix Gradient2), {rec}")
            }
        }
    }
}

/// `tol<T>`, `gain<G>`, `slo<MS>` or several of them joined by `_` (after `adaptive_`),
/// each within the builder's range (an objective of 1 ms to 1 hour); hundredths are plenty
/// for a sweep.
fn parse_tuned(knobs: &str) -> Option<Strategy> {
    let (mut tolerance, mut gain, mut slo_ms) = (None, None, None);
    for knob in knobs.split('_') {
        let hundredths = |v: &str, lo: f64, hi: f64| {
            v.parse::<f64>()
                .ok()
                .filter(|v| (lo..=hi).contains(v))
                .map(|v| (v * 100.0).round() as u32)
        };
        if let Some(t) = knob.strip_prefix("tol") {
            tolerance = Some(hundredths(t, 1.0, 100.0)?);
        } else if let Some(g) = knob.strip_prefix("gain") {
            gain = Some(hundredths(g, 0.01, 1.0)?);
        } else if let Some(ms) = knob.strip_prefix("slo") {
            slo_ms = Some(
                ms.parse::<u32>()
                    .ok()
                    .filter(|ms| (1..=crate::MAX_MS).contains(ms))?,
            );
        } else {
            return None;
        }
    }
    (tolerance.is_some() || gain.is_some() || slo_ms.is_some()).then_some(Strategy::AdaptiveTuned {
        tolerance,
        gain,
        slo_ms,
    })
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::Naive => f.write_str("naive"),
            Strategy::Fixed => f.write_str("fixed"),
            Strategy::Tower => f.write_str("tower"),
            Strategy::Adaptive => f.write_str("adaptive"),
            Strategy::AdaptiveMetrics => f.write_str("adaptive_metrics"),
            Strategy::FixedN(n) => write!(f, "fixed_{n}"),
            Strategy::AdaptiveTuned {
                tolerance,
                gain,
                slo_ms,
            } => {
                f.write_str("adaptive")?;
                if let Some(t) = tolerance {
                    write!(f, "_tol{}.{:02}", t / 100, t % 100)?;
                }
                if let Some(g) = gain {
                    write!(f, "_gain{}.{:02}", g / 100, g % 100)?;
                }
                if let Some(ms) = slo_ms {
                    write!(f, "_slo{ms}")?;
                }
                Ok(())
            }
            Strategy::Aimd => f.write_str("aimd"),
            Strategy::Vegas => f.write_str("vegas"),
            Strategy::Gradient2 => f.write_str("gradient2"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_default_controller_traces_its_decisions() {
        for name in [
            "adaptive",
            "adaptive_metrics",
            "adaptive_tol1.5",
            "adaptive_slo60",
        ] {
            let strategy = Strategy::parse(name).unwrap();
            assert!(strategy.traces_decisions(), "{name}");
        }
        for name in [
            "naive",
            "fixed",
            "tower",
            "fixed_8",
            "aimd",
            "vegas",
            "gradient2",
        ] {
            let strategy = Strategy::parse(name).unwrap();
            assert!(!strategy.traces_decisions(), "{name}");
        }
    }

    #[test]
    fn names_round_trip() {
        let anchors = [
            Strategy::Aimd,
            Strategy::Vegas,
            Strategy::Gradient2,
            Strategy::AdaptiveMetrics,
        ];
        for s in DEFAULT.into_iter().chain(anchors).chain([
            Strategy::FixedN(64),
            Strategy::AdaptiveTuned {
                tolerance: Some(150),
                gain: None,
                slo_ms: None,
            },
            Strategy::AdaptiveTuned {
                tolerance: None,
                gain: Some(25),
                slo_ms: None,
            },
            Strategy::AdaptiveTuned {
                tolerance: Some(200),
                gain: Some(30),
                slo_ms: None,
            },
            Strategy::AdaptiveTuned {
                tolerance: None,
                gain: None,
                slo_ms: Some(60),
            },
            Strategy::AdaptiveTuned {
                tolerance: Some(150),
                gain: None,
                slo_ms: Some(100),
            },
        ]) {
            assert_eq!(Strategy::parse(&s.to_string()), Ok(s));
        }
        assert!(Strategy::parse("fixed_0").is_err());
        assert!(Strategy::parse("spawn").is_err());
        assert_eq!(
            Strategy::parse("adaptive_tol1.5"),
            Ok(Strategy::AdaptiveTuned {
                tolerance: Some(150),
                gain: None,
                slo_ms: None,
            })
        );
        assert_eq!(
            Strategy::parse("adaptive_tol2_gain0.3"),
            Ok(Strategy::AdaptiveTuned {
                tolerance: Some(200),
                gain: Some(30),
                slo_ms: None,
            })
        );
        for bad in [
            "adaptive_tol0.5",
            "adaptive_tolNaN",
            "adaptive_tol",
            "adaptive_tol1e9",
            "adaptive_gain0",
            "adaptive_gain2",
            "adaptive_",
            "adaptive_tol1.5_",
            "adaptive_speed3",
            "adaptive_slo0",
            "adaptive_slo1.5",
            "adaptive_slo-60",
            "adaptive_slo99999999999",
        ] {
            assert!(Strategy::parse(bad).is_err(), "{bad}");
        }
        for s in anchors {
            assert!(s.is_surgepool() && s.limit().is_some_and(|l| !l.is_fixed()));
        }
    }
}
