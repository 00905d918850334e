//! The default controller behind [`Limit::adaptive`]: a latency gradient against a
//! periodically re-measured minimum RTT (Envoy's adaptive concurrency filter) that guards a
//! throughput hill climber (the .NET thread pool's idea), started by TCP-style slow start.
//! `README.md` beside this file gives the formulas, the reasons and the sources.
//!
//! Samples are folded into windows of about one round trip (every slot turned over once,
//! and at least [`MIN_WINDOW_SAMPLES`]; more when RTTs are noisy, see `noise_samples`).
//! After every change of the limit one *settle* window is thrown away (counted from when
//! the work admitted under a higher limit has drained), so each decision sees the system
//! as the new limit shaped it; then a *measure* window gives the mean RTT
//! `r` and the goodput `x` (successes per second), and the controller decides, in order:
//!
//! 1. **Drops** (none succeeded, or more than 1 in 10 samples and they look like overload:
//!    slow, or with queued successes): back off ×0.9. Fast drops with flat latency (5xx,
//!    clients gone) are left to the climber.
//! 2. **Base RTT** re-measure window ended: `base = r`, restore the limit.
//! 3. **Latency guard**: if `r` exceeds `base × tolerance` by more than two standard
//!    errors of the window's mean, cut toward `limit × base / r` (the limit at which
//!    queueing would vanish): the first cut of a run smoothed, the next ones in full. If two
//!    cuts in a row did not lower the latency, the latency is not ours (the work itself got
//!    slower): take `r` as the new base instead, undo the cuts and search again from slow
//!    start. At the minimum, where a cut changes nothing, do so at once.
//! 4. **Periodic re-measure** (every `probe_interval`, jittered): run one window at half the
//!    limit and take its RTT as the base, so the base cannot drift up forever nor stay
//!    stuck at an old low.
//! 5. **Hill climbing**: move the limit by a step, keep the move only if goodput followed it
//!    (an increase must win at least `gain`, default ½, of its proportional gain, a decrease
//!    may lose at most that share of its proportional loss), double the step after a kept
//!    move (slow start when it keeps winning; a down-move takes at most half the limit),
//!    bisect after a rejected large up-move, and after a rejected small move go back, flip
//!    direction and hold for 1, 2, 4, 8, 16 windows before trying again. An up-move nobody came for is kept untested, and one
//!    whose goodput did not follow is kept if work was refused and latency stayed flat
//!    (callers honouring `Retry-After` come back later).

use std::time::Duration;

use tokio::time::Instant;

use super::adaptive_config::{AdaptiveConfig, MAX_PROBE_INTERVAL};
use super::algorithm::{whole, Algorithm, Rng, Sample};

/// A measure window holds at least this many samples, so one slow job cannot swing the mean.
const MIN_WINDOW_SAMPLES: u32 = 16;
/// The most samples noise can ask a measure window for (see `noise_samples`).
const MAX_NOISE_SAMPLES: u32 = 1024;
/// The smallest hill-climbing step, as a share of the limit (at least 1).
const STEP_FRACTION: f64 = 0.05;
/// A latency cut is judged, and a flat latency is told from a rising one, by half the
/// proportional change (the climber's own bar is the `gain` setting).
const HALF: f64 = 0.5;
/// A down-move never takes more than this share of the limit at once, however many moves
/// were kept before it: its step doubles after each kept move, and a step as large as the
/// limit would take it to the minimum in one move.
const MAX_DOWN_STEP: f64 = 0.5;
/// Longest pause, in windows, between moves once the climber sits on the knee.
const MAX_HOLD: u32 = 16;
/// Limit kept after a window with too many drops.
const DROP_BACKOFF: f64 = 0.9;
/// The cut never takes away more than half the limit at once (Envoy and Netflix clamp the
/// gradient at 0.5 for the same reason: one outlier window must not collapse the limit).
const MIN_GRADIENT: f64 = 0.5;

/// After a cut, an RTT above this × the RTT that caused the cut means latency is still
/// climbing (a change in progress), not that the work got slower.
const STILL_RISING: f64 = 1.05;

/// What the current window is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WindowKind {
    /// The first round after a change: its samples mostly describe the old limit.
    Settle,
    /// A round whose samples the controller decides on.
    Measure,
}

/// Sums over one window; O(1) to update.
#[derive(Debug, Clone, Copy)]
struct Window {
    kind: WindowKind,
    /// The limit this window ran under.
    limit: usize,
    start: Instant,
    samples: u32,
    successes: u32,
    dropped: u32,
    /// Sum of the successes' RTTs, in seconds.
    rtt_sum: f64,
    /// Sum of their squares, for the standard error of the mean.
    rtt_sq_sum: f64,
    /// Sum of the drops' RTTs, in seconds: slow drops (timeouts) signal overload, fast
    /// ones (a 5xx in 1 ms, a client gone after 10 ms) do not.
    drop_rtt_sum: f64,
    max_in_flight: usize,
    /// The limiter's refusal count when the window began, and at its last sample.
    refused_from: u64,
    refused_to: u64,
}

impl Window {
    /// Admissions refused during the window: demand above the limit.
    fn refused(&self) -> u64 {
        self.refused_to.saturating_sub(self.refused_from)
    }

    /// The standard error of the successes' mean RTT `mean`.
    fn std_error(&self, mean: f64) -> f64 {
        let n = f64::from(self.successes);
        if n < 2.0 {
            return 0.0;
        }
        let variance = (self.rtt_sq_sum / n - mean * mean).max(0.0) * n / (n - 1.0);
        (variance / n).sqrt()
    }
}

/// A limit and the goodput measured under it.
#[derive(Debug, Clone, Copy)]
struct Point {
    limit: usize,
    goodput: f64,
    /// Mean RTT, seconds.
    rtt: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

/// The live state of the default controller.
#[derive(Debug)]
pub(crate) struct Adaptive {
    config: AdaptiveConfig,
    limit: usize,
    window: Option<Window>,
    /// Mean RTT of the last measure window, seconds: the length of a round.
    round: f64,
    /// The base (no-queue) RTT, seconds.
    base: Option<f64>,
    /// When the next periodic re-measure of the base starts.
    next_probe: Option<Instant>,
    /// While re-measuring the base: the limit to restore afterwards.
    probing_from: Option<usize>,
    /// The last latency cut: the limit before it and the RTT that caused it.
    last_cut: Option<(usize, f64)>,
    /// A cut already failed to lower the latency once in the current run of cuts.
    doubted: bool,
    /// The limit before the current run of consecutive cuts began.
    cuts_from: Option<usize>,
    /// The point a pending hill-climbing move started from.
    moved_from: Option<Point>,
    direction: Direction,
    step: usize,
    /// While bisecting after a rejected large up-move: the limit that was rejected.
    ceiling: Option<usize>,
    /// Slow start: no move rejected and no cut yet.
    starting: bool,
    hold: u32,
    hold_left: u32,
    rng: Rng,
}

impl Adaptive {
    pub(crate) fn new(config: AdaptiveConfig) -> Self {
        let limit = config.initial();
        Adaptive {
            config,
            limit,
            window: None,
            round: 0.0,
            base: None,
            next_probe: None,
            probing_from: None,
            last_cut: None,
            doubted: false,
            cuts_from: None,
            moved_from: None,
            direction: Direction::Up,
            // Slow start: the first moves double the limit for as long as goodput follows.
            step: limit,
            ceiling: None,
            starting: true,
            hold: 1,
            hold_left: 0,
            rng: Rng::new(),
        }
    }

    fn min_step(&self) -> usize {
        ((self.limit as f64 * STEP_FRACTION) as usize).max(1)
    }

    fn set_limit(&mut self, limit: usize) {
        self.limit = limit.clamp(self.config.min, self.config.max);
    }

    fn schedule_probe(&mut self, now: Instant) {
        let jitter = 1.0 + self.config.probe_jitter * self.rng.next_f64();
        // Saturating throughout, although the builder bounds the interval: a clock near its
        // end must not panic inside a pool's `finish`. No representable instant: never.
        let delay = Duration::try_from_secs_f64(self.config.probe_interval.as_secs_f64() * jitter)
            .unwrap_or(MAX_PROBE_INTERVAL);
        // (With no such instant the next decision simply tries again.)
        self.next_probe = now.checked_add(delay);
    }

    /// `true` once the window holds enough to act on.
    fn window_done(&self, w: &Window, now: Instant) -> bool {
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
                w.samples >= MIN_WINDOW_SAMPLES
                    && (w.samples >= round_samples
                        || (self.round > 0.0 && elapsed() >= 4.0 * self.round))
                    && (w.samples >= self.noise_samples(w) || self.queued(w))
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
        let effect = self.config.gain * change.max(STEP_FRACTION);
        (8.0 * cv * cv / (effect * effect)).min(f64::from(MAX_NOISE_SAMPLES)) as u32
    }

    /// Acts on a finished measure window; returns `true` when the limit changed.
    fn decide(&mut self, w: &Window, now: Instant) -> bool {
        let before = self.limit;
        let elapsed = now.saturating_duration_since(w.start).as_secs_f64();
        if w.successes == 0 {
            // Nothing got through: overload reported by the caller, back off like AIMD.
            self.set_limit(whole(self.limit as f64 * DROP_BACKOFF, 1, usize::MAX));
            self.after_cut(before, self.round);
            return self.limit != before;
        }
        let rtt = w.rtt_sum / f64::from(w.successes);
        let goodput = f64::from(w.successes) / elapsed.max(1e-9);
        if u64::from(w.dropped) * 10 > u64::from(w.samples) && self.drops_mean_overload(w, rtt) {
            // Overload reported by the caller (timeouts, 503s): back off like AIMD.
            self.set_limit(whole(self.limit as f64 * DROP_BACKOFF, 1, usize::MAX));
            self.after_cut(before, self.round);
            return self.limit != before;
        }
        self.round = rtt;

        if let Some(restore) = self.probing_from.take() {
            // This window ran at half the limit: its RTT is the new base.
            self.base = Some(rtt);
            self.set_limit(restore);
            self.schedule_probe(now);
            self.moved_from = None;
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
            self.base = Some(rtt);
            self.last_cut = None;
            self.doubted = false;
            self.moved_from = None;
            if let Some(from) = self.cuts_from.take() {
                self.set_limit(from);
            }
            self.restart_search();
            self.schedule_probe(now);
            return self.limit != before;
        }
        if rtt - spread > base * self.config.tolerance {
            if let Some((cut_from, cut_rtt)) = self.last_cut {
                // A cut from `cut_from` to `w.limit` should have lowered the RTT roughly in
                // proportion if queueing caused it. It did not: the work itself is slower
                // now, and this RTT, measured at a lower limit, is the new base.
                // (If the RTT still *rose*, conditions are still changing under us: cut on.)
                let shrink = w.limit as f64 / cut_from as f64;
                let fell_short = rtt > cut_rtt * (1.0 - HALF * (1.0 - shrink));
                let still_rising = rtt > cut_rtt * STILL_RISING;
                if shrink < 1.0 && fell_short && !still_rising && !self.doubted {
                    // Once is not proof: the window that caused the cut may have straddled
                    // the change (half its RTTs from before), so `cut_rtt` understated the
                    // queue. Cut once more and judge against this window's RTT. (Without
                    // this second look, the first cut after the capacity halved was undone
                    // and the limit sat at the old knee for another second.)
                    self.doubted = true;
                } else if shrink < 1.0 && fell_short && !still_rising {
                    // The cuts were a mistake: undo them all.
                    self.base = Some(rtt);
                    self.last_cut = None;
                    self.doubted = false;
                    self.moved_from = None;
                    if let Some(from) = self.cuts_from.take() {
                        self.set_limit(from);
                    }
                    self.restart_search();
                    return self.limit != before;
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
                return self.limit != before;
            }
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
            self.after_cut(before, rtt);
            return self.limit != before;
        }
        self.last_cut = None;
        self.doubted = false;
        self.cuts_from = None;

        if self.next_probe.is_some_and(|at| now >= at) {
            let half = (self.limit / 2).max(self.config.min);
            if half < self.limit {
                self.probing_from = Some(self.limit);
                self.set_limit(half);
                self.moved_from = None;
                return true;
            }
            self.base = Some(rtt);
            self.schedule_probe(now);
        }

        self.climb(w, goodput, rtt);
        self.limit != before
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

    /// After the base changed under us (the work got slower): the knee may have moved
    /// far, up for waiting work (Little's law: three times the service time needs three
    /// times the concurrency for the same goodput), so search again from here as slow
    /// start does, doubling while goodput follows and bisecting when it stops. (Before,
    /// the climber restarted at 5 % steps with holds: after the lab's service time tripled
    /// it took 2 s to climb from 459 to 1000.)
    fn restart_search(&mut self) {
        self.moved_from = None;
        self.ceiling = None;
        self.starting = true;
        self.direction = Direction::Up;
        self.step = self.limit.max(1);
        self.hold = 1;
        self.hold_left = 0;
    }

    /// After a cut: forget the hill climber's reference and continue downwards, gently.
    fn after_cut(&mut self, before: usize, rtt: f64) {
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

    /// After a rejected move to `tried` (already undone). A large up-move (slow start's
    /// doubling, or a step grown by kept moves) is bisected: the knee lies between here and
    /// `tried`, so try half the step next, and remember `tried` as a ceiling that later
    /// steps halve toward. Otherwise flip direction, restart with a small step, and wait
    /// longer each time before the next move (1, 2, 4, ... windows).
    ///
    /// Before the bisection, one transient latency spike during slow start (a doubling
    /// that admits hundreds of jobs at once) sent the limit from 256 back to 128, then
    /// down by 5 %, then up again by 5 %, 10 %, 20 %...: about a second of lost goodput at
    /// every such spike (the lab's sleep work, 50,000 req/s offered).
    fn reject_move(&mut self, tried: usize) {
        let half = tried.saturating_sub(self.limit) / 2;
        self.starting = false;
        if self.direction == Direction::Up && half >= 2 * self.min_step() {
            self.step = half;
            self.ceiling = Some(tried);
            self.hold_left = 0;
            return;
        }
        self.ceiling = None;
        self.direction = match self.direction {
            Direction::Up => Direction::Down,
            Direction::Down => Direction::Up,
        };
        self.step = self.min_step();
        self.hold_left = self.hold;
        self.hold = (self.hold * 2).min(MAX_HOLD);
    }

    fn climb(&mut self, w: &Window, goodput: f64, rtt: f64) {
        let here = Point {
            limit: self.limit,
            goodput,
            rtt,
        };
        if let Some(from) = self.moved_from.take() {
            let change = here.limit as f64 / from.limit as f64 - 1.0;
            // Up (change > 0): goodput must rise by at least `gain` x the proportional gain.
            // Down (change < 0): goodput may fall by at most `gain` x the proportional loss.
            if change > 0.0 && w.max_in_flight <= from.limit && w.refused() == 0 {
                // Untested: no caller came for the new slots while it was measured, so the
                // window says nothing about the move. Keep it (it costs nothing while
                // unused, and at most one step sits above the demand: the next move waits
                // until the limit binds again) instead of rejecting it, which held back
                // callers that return in bursts (they honour `Retry-After`) for seconds.
            } else {
                let mut kept = goodput >= from.goodput * (1.0 + self.config.gain * change);
                // An up-move whose goodput did not follow is still kept if the limit turned
                // work away all along and the latency stayed clearly flat (it rose by less
                // than half the move, two standard errors included): the move cost nothing,
                // and goodput could not follow because refused callers went away for a
                // while. Past the knee the latency rises with the limit, so this never
                // keeps a move there.
                if !kept && change > 0.0 && w.refused() > 0 {
                    kept = rtt + 2.0 * w.std_error(rtt) <= from.rtt * (1.0 + HALF * change);
                }
                if !kept {
                    self.set_limit(from.limit);
                    self.reject_move(here.limit);
                    return;
                }
                self.step = match self.ceiling {
                    // Bisecting: halfway to the lowest rejected limit, until that is a
                    // small step; then climb on from here as usual (the ceiling may have
                    // been a transient, and conditions change).
                    Some(ceiling) if change > 0.0 => {
                        let half = ceiling.saturating_sub(self.limit) / 2;
                        if half >= 2 * self.min_step() {
                            half
                        } else {
                            self.ceiling = None;
                            self.min_step()
                        }
                    }
                    _ => self.step.saturating_mul(2).min(self.limit.max(1)),
                };
                self.hold = 1;
            }
        } else if self.hold_left > 0 {
            self.hold_left -= 1;
            return;
        }

        // Only move while the limit is what holds the work back: when callers bring less
        // than the limit ("app limited"), goodput says nothing about the limit.
        // Refusals count too: callers that were turned away and come back later leave the
        // limit looking unused.
        let binding = w.max_in_flight.saturating_add(w.limit / 10) >= w.limit || w.refused() > 0;
        if !binding {
            return;
        }
        let target = match self.direction {
            Direction::Up => self.limit.saturating_add(self.step),
            Direction::Down => {
                let most = (self.limit as f64 * MAX_DOWN_STEP) as usize;
                self.limit.saturating_sub(self.step.min(most.max(1)))
            }
        };
        let before = self.limit;
        self.set_limit(target);
        if self.limit == before {
            // At a bound: try the other way next time.
            self.direction = match self.direction {
                Direction::Up => Direction::Down,
                Direction::Down => Direction::Up,
            };
            self.step = self.min_step();
        } else {
            self.moved_from = Some(here);
        }
    }
}

impl Algorithm for Adaptive {
    fn update(&mut self, sample: &Sample) -> usize {
        let now = sample.now;
        let limit = self.limit;
        let w = self.window.get_or_insert_with(|| Window {
            kind: WindowKind::Measure,
            limit,
            start: now.checked_sub(sample.rtt).unwrap_or(now),
            samples: 0,
            successes: 0,
            dropped: 0,
            rtt_sum: 0.0,
            rtt_sq_sum: 0.0,
            drop_rtt_sum: 0.0,
            max_in_flight: 0,
            refused_from: sample.refused,
            refused_to: sample.refused,
        });
        // Saturating: a window of 4 billion samples cannot happen in practice, but a count
        // must never panic inside a pool's `finish`.
        w.samples = w.samples.saturating_add(1);
        if sample.dropped {
            w.dropped = w.dropped.saturating_add(1);
            w.drop_rtt_sum += sample.rtt.as_secs_f64();
        } else {
            w.successes = w.successes.saturating_add(1);
            let rtt = sample.rtt.as_secs_f64();
            w.rtt_sum += rtt;
            w.rtt_sq_sum += rtt * rtt;
        }
        w.max_in_flight = w.max_in_flight.max(sample.in_flight);
        if w.kind == WindowKind::Settle && sample.in_flight > w.limit {
            // Still draining to a lower limit: the settle round has not begun.
            w.samples = 0;
            w.start = now;
        }
        w.refused_to = sample.refused;
        let w = *w;
        if !self.window_done(&w, now) {
            return self.limit;
        }
        let changed = match w.kind {
            WindowKind::Settle => false,
            WindowKind::Measure => self.decide(&w, now),
        };
        self.window = Some(Window {
            kind: if changed {
                WindowKind::Settle
            } else {
                WindowKind::Measure
            },
            limit: self.limit,
            start: now,
            samples: 0,
            successes: 0,
            dropped: 0,
            rtt_sum: 0.0,
            rtt_sq_sum: 0.0,
            drop_rtt_sum: 0.0,
            max_in_flight: 0,
            refused_from: sample.refused,
            refused_to: sample.refused,
        });
        self.limit
    }
}
