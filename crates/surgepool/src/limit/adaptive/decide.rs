//! The decision on a finished measure window (steps 1 to 4 of the module doc: drops, the
//! base RTT and its periodic re-measure, the latency guard) before it hands over to the
//! hill climber.

use std::time::Duration;

use tokio::time::Instant;

use super::climb::Direction;
use super::window::Window;
use super::{Adaptive, HALF};
use crate::limit::adaptive_config::MAX_PROBE_INTERVAL;
use crate::limit::algorithm::whole;

/// Limit kept after a window with too many drops.
const DROP_BACKOFF: f64 = 0.9;
/// The cut never takes away more than half the limit at once (Envoy and Netflix clamp the
/// gradient at 0.5 for the same reason: one outlier window must not collapse the limit).
const MIN_GRADIENT: f64 = 0.5;

/// After a cut, an RTT above this × the RTT that caused the cut means latency is still
/// climbing (a change in progress), not that the work got slower.
const STILL_RISING: f64 = 1.05;

/// A run of cuts that has taken the limit to this share of where it began is judged as a
/// whole: if the latency did not fall with it, the latency is not ours, however it moved
/// from one window to the next.
const DEEP_CUT: f64 = 0.25;

/// How slow start goes on after a new base (see [`Adaptive::rebase`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Restart {
    /// Double while goodput follows: nothing is known of the new knee (the limit sat at
    /// the minimum, so the limit before says nothing about it).
    Unbounded,
    /// Double up to the limit the cuts began from × (new base / old base).
    LittlesLaw,
}

impl Adaptive {
    fn schedule_probe(&mut self, now: Instant) {
        let jitter = 1.0 + self.config.probe_jitter * self.rng.next_f64();
        // Saturating throughout, although the builder bounds the interval: a clock near its
        // end must not panic inside a pool's `finish`. No representable instant: never.
        let delay = Duration::try_from_secs_f64(self.config.probe_interval.as_secs_f64() * jitter)
            .unwrap_or(MAX_PROBE_INTERVAL);
        // (With no such instant the next decision simply tries again.)
        self.next_probe = now.checked_add(delay);
    }

    /// Acts on a finished measure window; returns `true` when the limit changed.
    pub(super) fn decide(&mut self, w: &Window, now: Instant) -> bool {
        let before = self.limit;
        if w.successes == 0 {
            // Nothing got through: overload reported by the caller, back off like AIMD.
            self.back_off(before);
            return self.limit != before;
        }
        let rtt = w.rtt_sum / f64::from(w.successes);
        let goodput = self.objective(w);
        if u64::from(w.dropped) * 10 > u64::from(w.samples) && self.drops_mean_overload(w, rtt) {
            // Overload reported by the caller (timeouts, 503s): back off like AIMD.
            self.back_off(before);
            return self.limit != before;
        }
        self.round = rtt;

        if let Some(restore) = self.probing_from.take() {
            // This window ran at half the limit: its RTT is the new base.
            self.base = Some(rtt);
            self.set_limit(restore);
            self.schedule_probe(now);
            self.moved_from = None;
            self.deep_from = None;
            return self.limit != before;
        }
        let base = match self.base {
            Some(base) if base <= rtt => base,
            _ => {
                self.base = Some(rtt);
                rtt
            }
        };
        if self.next_probe.is_none() {
            self.schedule_probe(now);
        }

        // Two standard errors of the window's mean: with noisy service times a window's
        // mean strays by this much without any queue, and must not be read as one.
        let spread = 2.0 * w.std_error(rtt);
        if rtt - spread > base * self.config.tolerance && self.limit <= self.config.min {
            // At the minimum a cut changes nothing, so "did the last cut lower the latency"
            // can never be asked, and a base learned on cheaper work would pin the limit
            // here for good (the review: limit 1 for 20+ s after a warm-up on a cheap
            // route). Running at the minimum, no queue is ours: this RTT is the base.
            self.rebase(rtt, Restart::Unbounded);
            self.schedule_probe(now);
            return self.limit != before;
        }
        if rtt - spread > base * self.config.tolerance {
            self.latency_guard(w, rtt, base, before);
            return self.limit != before;
        }
        if let Some((from, _)) = self.deep_from {
            if self.limit as f64 <= from as f64 * DEEP_CUT {
                // A run of cuts that took three quarters of the limit has ended: the
                // latency it answered may have been a burst the limit did not cause, and
                // the climber's small steps would take seconds to find out (the lab's
                // HTTP run: 365 → 71, then 1024-sample windows of 5 % moves at 1,600/s).
                // Search again from here as slow start does: a doubling that goodput
                // follows is kept, one that raises the latency is bisected back. Up to
                // the limit the run began from, which the burst found acceptable; the
                // climber's steps go on from there. (Doubling on, the lab's HTTP server
                // on one saturated core went 203 → 1,624 in four windows where the run
                // had begun at 1,084, at an RTT of 58–114 ms, and cut back down again.)
                self.restart_search();
                self.restart_from = Some((from, base));
            }
        }
        if self.deep_from.is_some() && !self.starting {
            // A run of latency cuts has ended within tolerance, but the RTT may still carry
            // a queue the tolerance lets pass (one cut, smoothed, took a knee that halved
            // from 16 to 8 only to 12: 1.55× the base). Its size says how far the knee
            // is: the climber's next move goes down that far at once, and is kept only if
            // goodput allows it. Before, 5 % steps, each rejected now and then by noise,
            // took 0.2–3.3 s (12 noise seeds) to reach the new knee.
            let queued = rtt - spread;
            if queued > base {
                let free = (self.limit as f64 * base / queued).ceil() as usize;
                let step = self.limit.saturating_sub(free);
                if step > self.min_step() {
                    self.direction = Direction::Down;
                    self.step = step;
                    self.hold_left = 0;
                    self.to_queue_free = true;
                }
            }
        }
        self.last_cut = None;
        self.doubted = false;
        self.cuts_from = None;
        self.deep_from = None;

        // A move awaiting its judgement is judged first: the re-measure restores the limit
        // it interrupted, so a move tested by this window would otherwise be kept unjudged
        // (simulated: a rejected test of 3 slots on 2 cores kept that way, and the limit
        // spent 20 windows at 1–4 slots finding its way back).
        if self.next_probe.is_some_and(|at| now >= at)
            && self.moved_from.is_none()
            && self.start_probe(w, rtt, now)
        {
            return true;
        }

        self.climb(w, goodput, rtt);
        self.limit != before
    }

    /// Overload reported by the caller (nothing got through, or drops that mean overload):
    /// back off like AIMD from the limit `before` the decision.
    fn back_off(&mut self, before: usize) {
        self.set_limit(whole(self.limit as f64 * DROP_BACKOFF, 1, usize::MAX));
        self.after_cut(before, self.round);
    }

    /// The periodic re-measure of the base is due: halve the limit for one window and
    /// return `true`, or, when it cannot go lower or the limit held nothing back in the
    /// window `w` (RTT `rtt`), take `rtt` as the base at once and schedule the next
    /// re-measure.
    fn start_probe(&mut self, w: &Window, rtt: f64, now: Instant) -> bool {
        let half = (self.limit / 2).max(self.config.min);
        // Below capacity the demand, not the limit, sets the concurrency: no queue builds
        // in our slots, and halving them would only refuse the callers above the half (a
        // simulation at half the capacity: 0.15 % of the requests refused, every one in a
        // re-measure). The RTT at the demand's own concurrency is then the base; should
        // it carry a queue the limit did not cause, any lower window takes its place.
        let idle_slots = w.max_in_flight.saturating_add(w.limit / 10) < w.limit;
        if half < self.limit && (w.refused() > 0 || !idle_slots) {
            self.probing_from = Some(self.limit);
            self.set_limit(half);
            self.moved_from = None;
            return true;
        }
        self.base = Some(rtt);
        self.schedule_probe(now);
        false
    }

    /// The latency guard, for a window whose mean RTT `rtt` exceeds `base × tolerance`
    /// beyond its noise (and a limit above the minimum): undo the cuts if they did not
    /// lower the latency, reject the climber's own step up if that raised it, or else cut
    /// toward the limit at which queueing would vanish.
    fn latency_guard(&mut self, w: &Window, rtt: f64, base: f64, before: usize) {
        if let Some((from, peak_rtt)) = self.deep_from {
            // The run of cuts as a whole: a queue in our slots shrinks with the work we
            // admit, so a quarter of the limit must have taken a good part of the latency
            // away (to 0.625× at a quarter, toward half as the limit falls further),
            // whatever the windows in between did. If it did not, the
            // latency rose for a reason the limit cannot relieve (another load took the
            // machine, the work got slower over many windows), and each window's "still
            // rising" would otherwise cut on to a few slots (the lab's HTTP run at 3×
            // overload: 448 → 22 in five windows while the RTT rose from 41 to 66 ms).
            // Judged against the highest RTT that caused a cut of the run, not the first:
            // the first window may have straddled a drop in capacity and understate the
            // queue (after the knee fell tenfold, the first cut's RTT was 2.5× the base,
            // the next 7.7×, and 192 slots looked like cuts that had not lowered it).
            let shrink = w.limit as f64 / from as f64;
            if shrink <= DEEP_CUT && rtt > peak_rtt * (1.0 - HALF * (1.0 - shrink)) {
                self.rebase(rtt, Restart::LittlesLaw);
                return;
            }
        }
        if let Some((cut_from, cut_rtt)) = self.last_cut {
            // A cut from `cut_from` to `w.limit` should have lowered the RTT roughly in
            // proportion if queueing caused it. It did not: the work itself is slower
            // now, and this RTT, measured at a lower limit, is the new base.
            // (If the RTT still *rose*, conditions are still changing under us: cut on.)
            let shrink = w.limit as f64 / cut_from as f64;
            let fell_short = rtt > cut_rtt * (1.0 - HALF * (1.0 - shrink));
            let still_rising = rtt > cut_rtt * STILL_RISING;
            // Only the run's first cut can have been caused by such a window: every later
            // one was measured after a settle round at its own limit.
            let first_of_run = self.cuts_from == Some(cut_from);
            if shrink < 1.0 && fell_short && !still_rising && !self.doubted && first_of_run {
                // Once is not proof: the window that caused the cut may have straddled
                // the change (half its RTTs from before), so `cut_rtt` understated the
                // queue. Cut once more and judge against this window's RTT. (Without
                // this second look, the first cut after the capacity halved was undone
                // and the limit sat at the old knee for another second.)
                self.doubted = true;
            } else if shrink < 1.0 && fell_short && !still_rising {
                // The cuts were a mistake: undo them all.
                self.rebase(rtt, Restart::LittlesLaw);
                return;
            }
        }
        if let Some(from) = self.moved_from.filter(|from| from.limit < w.limit) {
            // The climber's own step up raised the latency past tolerance: a rejected
            // move (undo it and back off), not a sign that the system changed.
            // Only while starting (or already bisecting) is a latency spike read as a
            // transient worth bisecting: later it means the knee moved down (capacity
            // dropped during the move), and the cut must not wait for a bisection.
            self.moved_from = None;
            self.set_limit(from.limit);
            let bisect = self.starting || self.ceiling.is_some();
            self.reject_move(if bisect { w.limit } else { from.limit });
            return;
        }
        self.cut(rtt, base, before);
    }

    /// Cuts the limit toward `limit × base / rtt`, by at least one.
    fn cut(&mut self, rtt: f64, base: f64, before: usize) {
        let gradient = (base / rtt).max(MIN_GRADIENT);
        let target = self.limit as f64 * gradient;
        // The first cut of a run is smoothed (one window may be an outlier); a second
        // window still above tolerance confirms the queue, so the next cut goes all the
        // way to the target. (Smoothed throughout, the cuts stopped at 1.26x the new
        // knee once the latency fell within tolerance, and the climber needed a second
        // more to finish the job after the capacity halved.)
        let share = if self.last_cut.is_some() {
            1.0
        } else {
            self.config.smoothing
        };
        let smoothed = self.limit as f64 * (1.0 - share) + target * share;
        let new = whole(smoothed, 1, usize::MAX).min(self.limit.saturating_sub(1));
        self.set_limit(new);
        self.deep_from = match self.deep_from {
            Some((from, peak)) => Some((from, peak.max(rtt))),
            None => Some((before, rtt)),
        };
        self.after_cut(before, rtt);
    }

    /// The latency is not ours (the work itself got slower): take `rtt` as the new base,
    /// undo the current run of cuts and search again from slow start. With
    /// [`Restart::LittlesLaw`], slow start stops at the old limit × the ratio of the new
    /// base to the old (see [`Adaptive::start_cap`]).
    pub(super) fn rebase(&mut self, rtt: f64, restart: Restart) {
        let old_base = self.base;
        self.base = Some(rtt);
        self.last_cut = None;
        self.doubted = false;
        self.moved_from = None;
        self.deep_from = None;
        if let Some(from) = self.cuts_from.take() {
            self.set_limit(from);
        }
        self.restart_search();
        if let (Restart::LittlesLaw, Some(old)) = (restart, old_base) {
            // Work that got `rtt / old` times slower at the same capacity needs that many
            // times the concurrency (Little's law), and no more: if the capacity fell
            // with it (slower CPU work), the knee stays. So the knee now lies at or below
            // the limit the cuts began from times that ratio, if that limit was the old
            // knee; slow start goes no further, and the climber's steps take over there.
            // (Doubling on, the lab's sleep work whose service time tripled went 725 →
            // 1,450 → 2,900 → 5,800 where the knee was near 2,000, and a round of 5,800
            // slots took 0.7 s to judge, at p50 365 ms and 2.5 GB.)
            if old > 0.0 && old.is_finite() {
                self.restart_from = Some((self.limit, old));
            }
        }
    }

    /// Whether a window's drops say "overload": they were slow (timeouts: the mean drop took
    /// longer than the tolerated RTT) or the successes queued. Fast drops with a flat latency
    /// are errors or clients that left (a 1 s burst of fast 5xx, or 1 client in 8
    /// disconnecting at 10 ms, cut the limit by 10 % a window, from the knee to a few
    /// dozen). Those are left to the hill climber, which counts only successes as goodput,
    /// so a limit whose extra work only fails still stops growing.
    fn drops_mean_overload(&self, w: &Window, rtt: f64) -> bool {
        let Some(base) = self.base else {
            return true;
        };
        let tolerated = base * self.config.tolerance;
        let drop_rtt = w.drop_rtt_sum / f64::from(w.dropped.max(1));
        drop_rtt > tolerated || rtt - 2.0 * w.std_error(rtt) > tolerated
    }

    /// After a cut: forget the hill climber's reference and continue downwards, gently.
    fn after_cut(&mut self, before: usize, rtt: f64) {
        self.to_queue_free = false;
        self.restart_from = None;
        if self.last_cut.is_none() {
            self.cuts_from = Some(before);
        }
        self.last_cut = Some((before, rtt));
        self.moved_from = None;
        self.ceiling = None;
        self.starting = false;
        self.direction = Direction::Down;
        self.step = self.min_step();
        self.hold_left = 0;
    }
}
