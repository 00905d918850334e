//! CoDel ("controlled delay", RFC 8289) applied to a job queue.
//!
//! CoDel acts on the *sojourn time* (how long the job at the head waited), not on the queue
//! length: while the sojourn time stays above `target` for at least one `interval`, it
//! starts shedding one job, then sheds the next after `interval / sqrt(count)`, so the rate
//! rises until the delay comes back under target. A queue that drains (sojourn below
//! target, or empty) leaves the shedding state at once. Good queues (bursts that drain
//! within an interval) are never touched. Defaults are the RFC's: 5 ms and 100 ms.

use std::time::Duration;

use tokio::time::Instant;

/// CoDel's state machine (RFC 8289 section 5, per dequeued job).
#[derive(Debug, Clone)]
pub(crate) struct Codel {
    target: Duration,
    interval: Duration,
    /// When the sojourn time first went above target and stayed (plus one interval).
    first_above: Option<Instant>,
    dropping: bool,
    drop_next: Option<Instant>,
    count: u32,
    last_count: u32,
}

impl Codel {
    pub(crate) fn new(target: Duration, interval: Duration) -> Codel {
        Codel {
            target,
            interval,
            first_above: None,
            dropping: false,
            drop_next: None,
            count: 0,
            last_count: 0,
        }
    }

    /// When to shed next; `None` when that is too far away to represent (a huge interval):
    /// then it never comes. Saturating, because this runs under the pool's lock.
    fn control_law(&self, from: Instant) -> Option<Instant> {
        let scaled = self.interval.as_secs_f64() / f64::from(self.count.max(1)).sqrt();
        from.checked_add(Duration::try_from_secs_f64(scaled).ok()?)
    }

    /// Called for the job at the head, as it is dequeued; `true` means shed it.
    pub(crate) fn should_shed(&mut self, now: Instant, sojourn: Duration, now_empty: bool) -> bool {
        let ok_to_drop = if sojourn < self.target || now_empty {
            self.first_above = None;
            false
        } else {
            match self.first_above {
                None => {
                    // `None` again when the interval is too long to represent: never.
                    self.first_above = now.checked_add(self.interval);
                    false
                }
                Some(t) => now >= t,
            }
        };

        if self.dropping {
            if !ok_to_drop {
                self.dropping = false;
                return false;
            }
            if self.drop_next.is_some_and(|t| now >= t) {
                self.count = self.count.saturating_add(1);
                self.drop_next = self.control_law(self.drop_next.unwrap_or(now));
                return true;
            }
            return false;
        }
        if ok_to_drop {
            self.dropping = true;
            // Re-enter with a higher rate if we were dropping recently (RFC 8289 5.5).
            let delta = self.count.saturating_sub(self.last_count);
            let recent = self.drop_next.is_some_and(|t| {
                now.saturating_duration_since(t) < self.interval.saturating_mul(16)
            });
            self.count = if delta > 1 && recent { delta } else { 1 };
            self.drop_next = self.control_law(now);
            self.last_count = self.count;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_that_drains_within_an_interval_is_never_shed() {
        let mut codel = Codel::new(Duration::from_millis(5), Duration::from_millis(100));
        let t0 = Instant::now();
        for i in 0..50u64 {
            let now = t0 + Duration::from_millis(i);
            assert!(!codel.should_shed(now, Duration::from_millis(20), false));
        }
        // Delay falls under target: the episode is over.
        assert!(!codel.should_shed(
            t0 + Duration::from_millis(60),
            Duration::from_millis(1),
            false
        ));
        assert!(!codel.should_shed(
            t0 + Duration::from_millis(200),
            Duration::from_millis(20),
            false
        ));
    }

    #[test]
    fn a_standing_queue_is_shed_at_a_rising_rate() {
        let mut codel = Codel::new(Duration::from_millis(5), Duration::from_millis(100));
        let t0 = Instant::now();
        let mut shed_at = Vec::new();
        for ms in 0..1_000u64 {
            if codel.should_shed(
                t0 + Duration::from_millis(ms),
                Duration::from_millis(50),
                false,
            ) {
                shed_at.push(ms);
            }
        }
        // First shed after one interval above target, then intervals shrink as 100/sqrt(n).
        assert_eq!(shed_at[0], 100);
        assert_eq!(shed_at[1], 200);
        assert!(shed_at[2] - shed_at[1] < 100);
        let gaps: Vec<u64> = shed_at.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps.windows(2).all(|g| g[1] <= g[0]),
            "gaps must not grow: {gaps:?}"
        );
    }
}
