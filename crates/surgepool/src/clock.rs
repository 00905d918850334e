//! Time for the pools' bookkeeping: a [`Stamp`] is nanoseconds since the pool was built, in
//! a `u64`. One reading is one `Instant::now()` and one subtraction; every difference after
//! that is an integer subtraction, where `Instant` arithmetic costs a checked `timespec`
//! subtraction each time (profiled: ~55 instructions, four to six per task). Readings come
//! from tokio's clock, so tests with paused time see paused stamps.

use std::time::Duration;

use tokio::time::Instant;

/// A pool's time origin.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
}

/// Nanoseconds since a [`Clock`]'s epoch (saturating at 0 and `u64::MAX`, 584 years).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Stamp(u64);

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            epoch: Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> Stamp {
        self.at(Instant::now())
    }

    /// The stamp of `instant`; instants before the epoch are stamped 0.
    pub(crate) fn at(&self, instant: Instant) -> Stamp {
        let nanos = instant.saturating_duration_since(self.epoch).as_nanos();
        Stamp(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The instant of `stamp` (for code that works in `Instant`s, such as CoDel).
    pub(crate) fn instant(&self, stamp: Stamp) -> Instant {
        let offset = Duration::from_nanos(stamp.0);
        self.epoch.checked_add(offset).unwrap_or(self.epoch)
    }
}

impl Stamp {
    /// Nanoseconds from `earlier` to `self`, 0 if `earlier` is later.
    pub(crate) fn nanos_since(self, earlier: Stamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn stamps_follow_paused_time_and_saturate() {
        let clock = Clock::new();
        let start = clock.now();
        tokio::time::advance(Duration::from_millis(3)).await;
        let later = clock.now();
        assert_eq!(later.nanos_since(start), 3_000_000);
        assert_eq!(start.nanos_since(later), 0);
        let before_epoch = Instant::now() - Duration::from_secs(60);
        assert_eq!(clock.at(before_epoch), Stamp(0));
        assert_eq!(clock.instant(later), Instant::now());
    }
}
