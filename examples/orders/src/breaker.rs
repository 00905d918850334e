//! A circuit breaker (seed 002 §10): after `failures` consecutive failures of the upstream it
//! opens and answers at once for `cooldown`, instead of stacking requests on a dead service;
//! then it half-opens and lets exactly one probe through, which closes it on success and
//! re-opens it on failure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// The breaker. Shared by every request to one upstream.
#[derive(Debug)]
pub(crate) struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    cooldown: Duration,
    opened: AtomicU64,
    rejected: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
}

/// Leave to call the upstream once. Report the outcome; a permit dropped unreported (the
/// request was cancelled) counts as a failure, so a probe can never be lost.
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    done: bool,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold,
            cooldown,
            opened: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A permit, or how long until the breaker may let a probe through.
    pub(crate) fn acquire(&self) -> Result<Permit<'_>, Duration> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => {}
            State::Open { until } => {
                let now = Instant::now();
                if now < until {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(until - now);
                }
                *state = State::HalfOpen; // this caller is the probe
            }
            State::HalfOpen => {
                // A probe is out: everyone else still gets the fast answer.
                self.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(self.cooldown);
            }
        }
        Ok(Permit {
            breaker: self,
            done: false,
        })
    }

    fn record(&self, ok: bool) {
        let mut state = self.lock();
        if ok {
            self.successes.fetch_add(1, Ordering::Relaxed);
            *state = State::Closed { failures: 0 };
            return;
        }
        self.failures.fetch_add(1, Ordering::Relaxed);
        let open = match *state {
            State::Closed { failures } => {
                let failures = failures + 1;
                *state = State::Closed { failures };
                failures >= self.threshold
            }
            State::HalfOpen => true,
            // A call admitted before the breaker opened: it is open already.
            State::Open { .. } => false,
        };
        if open {
            *state = State::Open {
                until: Instant::now() + self.cooldown,
            };
            self.opened.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// 0 closed, 1 open, 2 half-open.
    pub(crate) fn state_code(&self) -> u8 {
        match *self.lock() {
            State::Closed { .. } => 0,
            State::Open { .. } => 1,
            State::HalfOpen => 2,
        }
    }

    pub(crate) fn metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(out, "orders_breaker_state {}", self.state_code());
        for (name, v) in [
            ("opened", &self.opened),
            ("rejected", &self.rejected),
            ("successes", &self.successes),
            ("failures", &self.failures),
        ] {
            let _ = writeln!(
                out,
                "orders_breaker_{name}_total {}",
                v.load(Ordering::Relaxed)
            );
        }
    }
}

impl Permit<'_> {
    pub(crate) fn success(mut self) {
        self.done = true;
        self.breaker.record(true);
    }

    pub(crate) fn failure(mut self) {
        self.done = true;
        self.breaker.record(false);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.record(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_half_opens_one_probe_and_closes() {
        let b = Breaker::new(2, Duration::ZERO);
        b.acquire().unwrap().failure();
        assert_eq!(b.state_code(), 0);
        b.acquire().unwrap().failure();
        assert_eq!(b.state_code(), 1);
        // Zero cooldown: the next caller is the probe, and only it.
        let probe = b.acquire().unwrap();
        assert_eq!(b.state_code(), 2);
        assert!(b.acquire().is_err());
        probe.success();
        assert_eq!(b.state_code(), 0);
    }

    #[test]
    fn failed_probe_reopens_and_open_rejects_with_wait() {
        let b = Breaker::new(1, Duration::from_secs(3600));
        b.acquire().unwrap().failure();
        let wait = b.acquire().unwrap_err();
        assert!(wait > Duration::from_secs(3000));
        let b = Breaker::new(1, Duration::ZERO);
        b.acquire().unwrap().failure();
        drop(b.acquire().unwrap()); // a cancelled probe counts as a failure
        assert_eq!(b.state_code(), 1);
    }
}
