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
/// A queue only helps absorb bursts shorter than a service time or two; anything longer is a
/// standing queue that adds its wait to every request (seed 003's pool: 100,000 slots, 8×
/// the service time in mean latency). So: a small queue, and a queue timeout of one service
/// time, after which waiting work is shed instead of run late.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueuePolicy {
    /// Queue slots per unit of limit (capacity = `limit × this`, at least [`MIN_QUEUE`]).
    pub(crate) capacity: usize,
    /// Waiting longer than this sheds the task.
    pub(crate) timeout: Duration,
}

/// Smallest queue the recommended configuration uses.
pub(crate) const MIN_QUEUE: usize = 64;

/// The recommended queue for a service time.
pub(crate) fn recommended_queue(service: Duration) -> QueuePolicy {
    QueuePolicy {
        capacity: MIN_QUEUE,
        timeout: service,
    }
}

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
    /// Parses `naive`, `fixed`, `tower`, `adaptive` or `fixed_<N>`.
    pub(crate) fn parse(s: &str) -> Result<Strategy, String> {
        match s.trim() {
            "naive" => Ok(Strategy::Naive),
            "fixed" => Ok(Strategy::Fixed),
            "tower" => Ok(Strategy::Tower),
            "adaptive" => Ok(Strategy::Adaptive),
            other => match other.strip_prefix("fixed_").map(str::parse::<usize>) {
                Some(Ok(n)) if n >= 1 => Ok(Strategy::FixedN(n)),
                _ => Err(format!(
                    "unknown strategy `{other}`: expected naive, fixed, tower, adaptive or \
                     fixed_<N> with N >= 1"
                )),
            },
        }
    }

    /// Whether the strategy is a surgepool pool (its accounting is cross-checked and its
    /// `lost` must be 0).
    pub(crate) fn is_surgepool(self) -> bool {
        matches!(
            self,
            Strategy::Fixed | Strategy::Adaptive | Strategy::FixedN(_)
        )
    }

    /// The settings, in words, for the table and the report.
    pub(crate) fn describe(self, service: Duration) -> String {
        let q = recommended_queue(service);
        let rec = format!(
            "queue {} slots, queue timeout {} ms",
            q.capacity,
            q.timeout.as_millis()
        );
        match self {
            Strategy::Naive => "tokio::spawn per request, no bound".to_owned(),
            Strategy::Fixed => {
                format!("surgepool Pool, Limit::fixed({SEED_LIMIT}), queue {SEED_QUEUE} (seed 003)")
            }
            Strategy::Tower => format!(
                "tower LoadShed + ConcurrencyLimit({TOWER_LIMIT}) around service_fn, no queue"
            ),
            Strategy::Adaptive => format!("surgepool Pool, Limit::adaptive(), {rec}"),
            Strategy::FixedN(n) => format!("surgepool Pool, Limit::fixed({n}), {rec}"),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::Naive => f.write_str("naive"),
            Strategy::Fixed => f.write_str("fixed"),
            Strategy::Tower => f.write_str("tower"),
            Strategy::Adaptive => f.write_str("adaptive"),
            Strategy::FixedN(n) => write!(f, "fixed_{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in DEFAULT.into_iter().chain([Strategy::FixedN(64)]) {
            assert_eq!(Strategy::parse(&s.to_string()), Ok(s));
        }
        assert!(Strategy::parse("fixed_0").is_err());
        assert!(Strategy::parse("spawn").is_err());
    }
}
