//! The window the controller folds samples into, and when one is done: a round of the
//! work, enough samples to act on, and more when the RTTs are noisy.

use tokio::time::Instant;

use super::{Adaptive, STEP_FRACTION};

/// A measure window holds at least this many samples, so one slow job cannot swing the mean.
pub(super) const MIN_WINDOW_SAMPLES: u32 = 16;
/// A window that already rejects its move beyond its noise (`verdict_settled`) may end at
/// this many samples: its standard error keeps one slow job from deciding. (At 16, the
/// lab's CPU work on 2 cores ran slow start's doubling to 4 slots for 16 jobs, each twice
/// as slow; simulated, ending such windows at 8 raised the share of the time near the knee
/// by 1–2 points on k = 2, k = 8 and the k = 16 halving, and lowered none by more than
/// 0.5 point.)
const MIN_REJECT_SAMPLES: u32 = 8;
/// The most samples noise can ask a measure window for (see `noise_samples`).
const MAX_NOISE_SAMPLES: u32 = 1024;

/// What the current window is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WindowKind {
    /// The first round after a change: its samples mostly describe the old limit.
    Settle,
    /// A round whose samples the controller decides on.
    Measure,
}

/// Sums over one window; O(1) to update.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    pub(super) kind: WindowKind,
    /// The limit this window ran under.
    pub(super) limit: usize,
    pub(super) start: Instant,
    pub(super) samples: u32,
    pub(super) successes: u32,
    /// Successes within the stated latency objective (`AdaptiveBuilder::slo`; 0 without).
    pub(super) within_slo: u32,
    pub(super) dropped: u32,
    /// Sum of the successes' RTTs, in seconds.
    pub(super) rtt_sum: f64,
    /// Sum of their squares, for the standard error of the mean.
    pub(super) rtt_sq_sum: f64,
    /// Sum of the drops' RTTs, in seconds: slow drops (timeouts) signal overload, fast
    /// ones (a 5xx in 1 ms, a client gone after 10 ms) do not.
    pub(super) drop_rtt_sum: f64,
    pub(super) max_in_flight: usize,
    /// Sum over the samples of the in-flight count each job saw (itself included).
    pub(super) in_flight_sum: f64,
    /// The limiter's refusal count when the window began, and at its last sample.
    pub(super) refused_from: u64,
    pub(super) refused_to: u64,
}

impl Window {
    /// An empty window of `kind` under `limit` from `start`, the limiter's refusal count at
    /// `refused`.
    pub(super) fn empty(kind: WindowKind, limit: usize, start: Instant, refused: u64) -> Window {
        Window {
            kind,
            limit,
            start,
            samples: 0,
            successes: 0,
            within_slo: 0,
            dropped: 0,
            rtt_sum: 0.0,
            rtt_sq_sum: 0.0,
            drop_rtt_sum: 0.0,
            max_in_flight: 0,
            in_flight_sum: 0.0,
            refused_from: refused,
            refused_to: refused,
        }
    }

    /// Admissions refused during the window: demand above the limit.
    pub(super) fn refused(&self) -> u64 {
        self.refused_to.saturating_sub(self.refused_from)
    }

    /// Goodput by Little's law: the mean in-flight count the jobs saw over their mean time
    /// in a slot, times the share that succeeded. Over a window of one round the count of
    /// completions per second is noisy (the lab's sleep work at a fixed limit: windows of
    /// 800 jobs differed by 3–5 %, fifteen times what the RTTs' spread predicts), so a
    /// 5 % move was judged by a coin; the mean RTT over the same jobs varies by 0.2 %.
    pub(super) fn goodput(&self) -> f64 {
        let time = self.rtt_sum + self.drop_rtt_sum;
        if self.samples == 0 || time <= 0.0 {
            return 0.0;
        }
        self.in_flight_sum * f64::from(self.successes) / (f64::from(self.samples) * time)
    }

    /// The standard error of the successes' mean RTT `mean`.
    pub(super) fn std_error(&self, mean: f64) -> f64 {
        let n = f64::from(self.successes);
        if n < 2.0 {
            return 0.0;
        }
        let variance = (self.rtt_sq_sum / n - mean * mean).max(0.0) * n / (n - 1.0);
        (variance / n).sqrt()
    }
}

impl Adaptive {
    /// `true` once the window holds enough to act on.
    pub(super) fn window_done(&self, w: &Window, now: Instant) -> bool {
        let round_samples = u32::try_from(w.limit).unwrap_or(u32::MAX);
        // Only when the sample count does not decide (an `Instant` subtraction is ~50
        // instructions, and this runs for every finished task of a pool).
        let elapsed = || now.saturating_duration_since(w.start).as_secs_f64();
        match w.kind {
            // One round, counted from when the work admitted under an older, higher limit
            // has drained to the new limit (`update` restarts the count until then): every
            // slot turned over once, or a round's time passed (app limited). Until then the
            // completions (their goodput, their RTT) belong to the old limit: after a cut
            // from 600 to 2, two samples made a "round" and the next window's goodput came
            // from the 600 jobs still running, so a move to the minimum looked free and was
            // kept; and after a cut from 1000 to 777 the next window's RTTs were those of
            // jobs admitted at 1000, so the cut looked useless and was undone.
            WindowKind::Settle => {
                w.samples >= round_samples || (self.round > 0.0 && elapsed() >= 2.0 * self.round)
            }
            WindowKind::Measure => {
                // The cheap tests first: `noise_samples` takes a square root.
                w.samples >= MIN_REJECT_SAMPLES
                    && (w.samples >= round_samples
                        || (self.round > 0.0 && elapsed() >= 4.0 * self.round))
                    && ((w.samples >= MIN_WINDOW_SAMPLES
                        && (w.samples >= self.noise_samples(w) || self.queued(w)))
                        || self.verdict_settled(w)
                        || self.start_settled(w))
            }
        }
    }

    /// Whether the window's latency is above tolerance beyond its noise: the latency guard
    /// acts on it at once. The noise rule below is for the hill climber's goodput test; a
    /// queue that two standard errors cannot explain needs no more samples (waiting for
    /// them held the limit at the old knee for 1.4 s after the capacity halved: the RTTs
    /// of a window that straddles the change vary so much that it asked for 1024).
    fn queued(&self, w: &Window) -> bool {
        let (Some(base), true) = (self.base, w.successes >= 2) else {
            return false;
        };
        let rtt = w.rtt_sum / f64::from(w.successes);
        rtt - 2.0 * w.std_error(rtt) > base * self.config.tolerance
    }

    /// Samples a measure window needs so that noise cannot pass for the goodput change the
    /// hill climber tests: two windows' goodputs differ by noise with a standard error of
    /// about `√2 · cv / √n` (cv: the RTTs' coefficient of variation); asking for two of
    /// those below the effect of the move gives `n ≥ 8 cv² / effect²`.
    fn noise_samples(&self, w: &Window) -> u32 {
        let n = f64::from(w.successes);
        if n < 2.0 || w.rtt_sum <= 0.0 {
            return 0;
        }
        let mean = w.rtt_sum / n;
        let cv = w.std_error(mean) * n.sqrt() / mean;
        let change = match self.moved_from {
            Some(from) => (self.limit as f64 / from.limit as f64 - 1.0).abs(),
            None => self.step as f64 / self.limit.max(1) as f64,
        };
        let effect = self.bar_gain() * change.max(STEP_FRACTION);
        (8.0 * cv * cv / (effect * effect)).min(f64::from(MAX_NOISE_SAMPLES)) as u32
    }
}
