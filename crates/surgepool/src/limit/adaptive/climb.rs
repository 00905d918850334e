//! The hill climber (step 5 of the decision): move the limit by a step, keep the move only
//! if goodput followed it, and how the search goes on after a kept move, a rejected one, a
//! cut or a new base.

use super::window::Window;
use super::{Adaptive, HALF};

/// A down-move never takes more than this share of the limit at once, however many moves
/// were kept before it: its step doubles after each kept move, and a step as large as the
/// limit would take it to the minimum in one move.
const MAX_DOWN_STEP: f64 = 0.5;
/// Longest pause, in windows, between moves once the climber sits on the knee.
const MAX_HOLD: u32 = 16;
/// How many times longer the climber waits before repeating a down-move that takes a
/// quarter of the limit or more (a limit of 4 or less) and was rejected from here last time.
const LARGE_DOWN_MOVE_HOLD: u32 = 4;

/// How many verdicts in a row may be voided (see [`void_verdict`]) before one counts
/// whatever the windows measured: conditions that keep changing are the conditions.
pub(super) const MAX_VOIDED: u32 = 2;
/// How far outside what the move explains, as a share of the move, the RTT must have gone
/// for a verdict to be void (besides two standard errors of the difference).
const VOID_MARGIN: f64 = 1.0;

/// How far past the tolerance a queue must raise the RTT for the latency guard to be
/// trusted with it: the guard acts on the window's mean less two standard errors.
const GUARD_MARGIN: f64 = 1.1;

/// A limit and the goodput measured under it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Point {
    pub(super) limit: usize,
    pub(super) goodput: f64,
    /// Mean RTT, seconds.
    pub(super) rtt: f64,
    /// Whether the limiter refused work during the window (demand above the limit).
    pub(super) refused: bool,
    /// The standard error of the window's mean RTT, as a share of it: the relative noise
    /// of `goodput` too, which is inversely proportional to the RTT.
    noise: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    Up,
    Down,
}

impl Adaptive {
    /// After the base changed under us (the work got slower): the knee may have moved
    /// far, up for waiting work (Little's law: three times the service time needs three
    /// times the concurrency for the same goodput), so search again from here as slow
    /// start does, doubling while goodput follows and bisecting when it stops. (Before,
    /// the climber restarted at 5 % steps with holds: after the lab's service time tripled
    /// it took 2 s to climb from 459 to 1000.)
    pub(super) fn restart_search(&mut self) {
        self.to_queue_free = false;
        self.moved_from = None;
        self.ceiling = None;
        self.starting = true;
        self.restart_from = None;
        self.direction = Direction::Up;
        self.step = self.limit.max(1);
        self.hold = 1;
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
    pub(super) fn reject_move(&mut self, tried: usize) {
        self.to_queue_free = false;
        let half = tried.saturating_sub(self.limit) / 2;
        self.starting = false;
        self.restart_from = None;
        if self.direction == Direction::Up && half >= 2 * self.min_step() {
            self.step = half;
            self.ceiling = Some(tried);
            self.hold_left = 0;
            return;
        }
        self.ceiling = None;
        if self.direction == Direction::Down {
            self.down_rejected_at = Some(self.limit);
        }
        self.direction = match self.direction {
            Direction::Up => Direction::Down,
            Direction::Down => Direction::Up,
        };
        self.step = self.min_step();
        self.hold_left = self.hold;
        let large_down = self.step.saturating_mul(4) >= self.limit;
        let repeated_down =
            self.direction == Direction::Down && self.down_rejected_at == Some(self.limit);
        if repeated_down && self.guard_covers(self.step) {
            // The latency guard answers this test: a knee `step` below the limit would
            // queue one job in `limit − step` and raise the RTT by `limit / (limit −
            // step)`, clearly past the tolerance, and the guard would have cut. (The base is
            // re-measured every probe interval, so it cannot hide such a queue for long.)
            // The test was made once from here and rejected; repeating it only halves
            // the goodput of a 2-slot limit for two windows every few seconds (the lab's
            // CPU work on 2 cores: 2 → 1 every 3–4 s, about 40 of 1,470 jobs in 15 s).
            // Test upwards instead, after the hold the down test would have waited.
            self.direction = Direction::Up;
            self.hold_left = self.hold.saturating_mul(LARGE_DOWN_MOVE_HOLD);
        } else if repeated_down && large_down {
            // The same large down-move was rejected from this limit last time: on a small
            // knee (the lab's CPU work: 2 cores) each such test costs a quarter to half of
            // the goodput for two windows and is rejected every time; every 36 windows they
            // cost about 5 % of the goodput. Repeat it 4 times more rarely. A first test
            // from a new limit (above a knee the latency guard tolerates: one slot above 2
            // cores raises the latency by half) is not held back, and up-moves keep their
            // holds, so a knee that rises is still found as soon. The price: a small knee
            // that drops by less than the tolerance (4 to 3 slots) waits for this hold.
            self.hold_left = self.hold.saturating_mul(LARGE_DOWN_MOVE_HOLD);
        }
        self.hold = (self.hold * 2).min(MAX_HOLD);
    }

    /// Whether a knee `step` below the limit would raise the RTT clearly past the
    /// tolerance (`limit / (limit − step)`, the jobs sharing `limit − step` slots), so that
    /// the latency guard cuts to it without a test.
    fn guard_covers(&self, step: usize) -> bool {
        let below = self.limit.saturating_sub(step);
        below > 0 && self.limit as f64 > below as f64 * self.config.tolerance * GUARD_MARGIN
    }

    pub(super) fn climb(&mut self, w: &Window, goodput: f64, rtt: f64) {
        let here = Point {
            limit: self.limit,
            goodput,
            rtt,
            refused: w.refused() > 0,
            noise: relative_noise(w, rtt),
        };
        if let Some(from) = self.moved_from.take() {
            if !self.judge_move(w, from, here) {
                return;
            }
        } else if self.hold_left > 0 {
            self.hold_left -= 1;
            return;
        }
        self.make_move(w, here);
    }

    /// Whether the window `w`, measuring the pending move, already rejects it beyond its
    /// noise, so that it may end before the noise rule's sample count: its goodput lies
    /// more than two standard errors of the difference below the bar
    /// [`judge_move`](Self::judge_move) sets. The noise rule asks for enough samples to
    /// tell a move that only just clears the bar from one that only just misses it; a
    /// move far below it is told sooner. (The lab's CPU work on 2 cores: a test of a third
    /// slot, its RTTs those of two jobs or of three on two cores, asked for 36–39 samples,
    /// every one 1.5× slower than at 2 slots and some past the SLO, to confirm that the
    /// goodput had not risen at all.) Only rejections end a window early: kept on early
    /// evidence too, moves were kept on noise more often (the simulated ±50 % noise at
    /// k = 16: 3 of 13 seeds fell below half the knee or settled 12 % above it, against 1).
    /// A rejection only holds the limit where it was.
    pub(super) fn verdict_settled(&self, w: &Window) -> bool {
        let Some(from) = self.moved_from else {
            return false;
        };
        if w.successes < 2 || w.rtt_sum <= 0.0 {
            return false;
        }
        let change = w.limit as f64 / from.limit as f64 - 1.0;
        if untested(w, &from, change) {
            // Nobody has come for the new slots yet: later samples may.
            return false;
        }
        let (rtt, doubt) = verdict_doubt(w, &from);
        // A rejection is settled only if the flat-latency exception cannot keep the move:
        // that needs the latency clearly flat, so a mean already past its bar would have
        // to fall well below it.
        let may_keep_flat =
            flat_exception_applies(w, &from, change) && rtt <= flat_rtt(&from, change);
        self.objective(w) * (1.0 + doubt) < self.bar(&from, change) && !may_keep_flat
    }

    /// Whether the window `w`, during slow start, may end before
    /// [`MIN_WINDOW_SAMPLES`](super::window::MIN_WINDOW_SAMPLES): it is the first window
    /// (there is no move to judge, only a base RTT and a goodput to learn), or it already
    /// keeps its doubling beyond its noise. A doubling must raise goodput by half, an effect
    /// far larger than the noise the sample floor guards against; but at a small limit the
    /// floor asks for many rounds (at 2 slots, 16 samples of 20 ms jobs are 8 rounds,
    /// 160 ms), and slow start from 2 to 32 slots took 0.4 s of the lab's 10 s run at the
    /// seed's rate, serving almost nothing (with this rule: 220 ms of ideal 20 ms jobs
    /// instead of 360, and 4,000–5,000 more requests within the SLO in the lab run's first
    /// 1.5 s). Judged as [`verdict_settled`](Self::verdict_settled)
    /// judges a rejection: the goodput, less two standard errors of the difference, must
    /// clear the bar, and the window holds at least `MIN_REJECT_SAMPLES`.
    pub(super) fn start_settled(&self, w: &Window) -> bool {
        if !self.starting || w.successes < 2 || w.rtt_sum <= 0.0 {
            return false;
        }
        let Some(from) = self.moved_from else {
            return self.base.is_none();
        };
        let change = w.limit as f64 / from.limit as f64 - 1.0;
        if change <= 0.0 || untested(w, &from, change) {
            return false;
        }
        let (_, doubt) = verdict_doubt(w, &from);
        self.objective(w) * (1.0 - doubt) >= self.bar(&from, change)
    }

    /// The goodput a move by `change` (a share of `from`'s limit) must reach to be kept:
    /// up (change > 0), a rise of at least `gain` × the proportional gain; down
    /// (change < 0), a fall of at most `gain` × the proportional loss.
    fn bar(&self, from: &Point, change: f64) -> f64 {
        from.goodput * (1.0 + self.bar_gain() * change)
    }

    /// Judges the pending move from `from` to `here` by the window `w` measured under it:
    /// keeps it (and sets the next step), or undoes and rejects it and returns `false`.
    fn judge_move(&mut self, w: &Window, from: Point, here: Point) -> bool {
        let queue_move = std::mem::take(&mut self.to_queue_free);
        let change = here.limit as f64 / from.limit as f64 - 1.0;
        if untested(w, &from, change) {
            // Untested: no caller came for the new slots while it was measured, so the
            // window says nothing about the move. Keep it (it costs nothing while
            // unused, and at most one step sits above the demand: the next move waits
            // until the limit binds again) instead of rejecting it, which held back
            // callers that return in bursts (they honour `Retry-After`) for seconds.
            return true;
        }
        let gained = here.goodput >= self.bar(&from, change);
        let mut kept = gained;
        // An up-move whose goodput did not follow is still kept if the limit turned
        // work away, before the move or after it, and the latency stayed clearly flat
        // (it rose by less than half the move, two standard errors included): the move
        // cost nothing, and goodput could not follow because refused callers went away
        // for a while, or because the move only made room for the bursts of a demand
        // just above the old limit (Poisson arrivals at half the capacity: at the
        // mean demand a few % are refused, and serving them is a gain of a few %, short
        // of half a 5 % move, so the climber stayed there and refused them for good).
        // Past the knee the latency rises with the limit, so this never keeps a move
        // there.
        if !kept && flat_exception_applies(w, &from, change) {
            kept = here.rtt + 2.0 * w.std_error(here.rtt) <= flat_rtt(&from, change);
        }
        // Slow start and bisection take large steps whose own transient moves the RTT, and
        // a move to where the queue would vanish is meant to lower it: not voided.
        let searching = self.starting || self.ceiling.is_some() || queue_move;
        if !searching && self.voided < MAX_VOIDED && void_verdict(w, &from, change, kept) {
            // The two windows did not measure the same conditions: the RTT moved further
            // than the move could move it, so the verdict says more about the machine than
            // about the limit. Undo the move and test it again after the same hold, neither
            // flipping the direction nor doubling the hold.
            self.voided += 1;
            self.set_limit(from.limit);
            self.hold_left = self.hold;
            return false;
        }
        self.voided = 0;
        if !kept {
            self.set_limit(from.limit);
            self.reject_move(here.limit);
            return false;
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
            // A move to where the queue would vanish landed at the knee's estimate: go
            // on from there in small steps (doubling it overshot to half the knee).
            _ if queue_move && change < 0.0 => self.min_step(),
            // Kept as free, not as a gain (the flat-latency exception): nothing says a
            // larger move would pay, so the step stays.
            _ if !gained => self.step,
            _ => self.step.saturating_mul(2).min(self.limit.max(1)),
        };
        self.hold = 1;
        true
    }

    /// Moves the limit one step from `here` in the current direction, if the limit binds.
    fn make_move(&mut self, w: &Window, here: Point) {
        // Only move while the limit is what holds the work back: when callers bring less
        // than the limit ("app limited"), goodput says nothing about the limit.
        // Refusals count too: callers that were turned away and come back later leave the
        // limit looking unused.
        let binding = w.max_in_flight.saturating_add(w.limit / 10) >= w.limit || w.refused() > 0;
        if !binding {
            return;
        }
        if let Some(cap) = self.start_cap().filter(|_| self.direction == Direction::Up) {
            if self.limit >= cap {
                // Slow start after a new base has reached what Little's law allows: the
                // climber's small steps go on from here (and double while kept).
                self.restart_from = None;
                self.starting = false;
                self.step = self.min_step();
            } else {
                self.step = self.step.min(cap - self.limit);
            }
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

/// Whether the window `w` says nothing about an up-move by `change` from `from`: no caller
/// came for the new slots (none was refused, and no more than `from`'s limit ran at once).
fn untested(w: &Window, from: &Point, change: f64) -> bool {
    change > 0.0 && w.max_in_flight <= from.limit && w.refused() == 0
}

/// Whether the flat-latency exception of [`Adaptive::judge_move`] may keep an up-move by
/// `change` from `from` that the window `w` measured: the limit refused work before the
/// move or during it.
fn flat_exception_applies(w: &Window, from: &Point, change: f64) -> bool {
    change > 0.0 && (w.refused() > 0 || from.refused)
}

/// The mean RTT below which the flat-latency exception counts an up-move by `change` from
/// `from` as free: a rise of less than half the move.
fn flat_rtt(from: &Point, change: f64) -> f64 {
    from.rtt * (1.0 + HALF * change)
}

/// Whether the verdict (`kept` or not) on a move by `change` from `from`, measured by the
/// window `w`, is void because the RTT moved further than the move could move it. By
/// Little's law the jobs' mean time in a slot changes by at most the move's share (the
/// whole move queues when goodput is flat) and at least not at all (no queue either side),
/// unless goodput itself falls with concurrency (contention). Outside `[1, 1 + change]`
/// (or `[1 + change, 1]` down) by more than [`VOID_MARGIN`] × the move and two standard
/// errors, something else most likely changed between the windows (a stall, a slowdown
/// every job shared); under contention the verdict counts after [`MAX_VOIDED`] voids.
/// Only the verdicts that such a window turns against the limit are voided: an up-move
/// rejected on a slower window, a down-move kept on a faster one. Voiding the others too
/// lost goodput in the simulation (a limit below the knee loses goodput, one above it
/// only adds queueing, which the latency guard bounds).
fn void_verdict(w: &Window, from: &Point, change: f64, kept: bool) -> bool {
    if w.successes < 2 || from.rtt <= 0.0 {
        return false;
    }
    let (rtt, doubt) = verdict_doubt(w, from);
    let ratio = rtt / from.rtt;
    let margin = VOID_MARGIN * change.abs() + doubt;
    if change > 0.0 {
        !kept && ratio > (1.0 + change) * (1.0 + margin)
    } else {
        kept && ratio < (1.0 + change) * (1.0 - margin)
    }
}

/// The mean RTT of the window `w`'s successes (it needs at least one), and the doubt of a
/// verdict on the move from `from` that `w` measured: two standard errors of the difference
/// between the two windows' means, as a share of them.
fn verdict_doubt(w: &Window, from: &Point) -> (f64, f64) {
    let rtt = w.rtt_sum / f64::from(w.successes);
    let noise = relative_noise(w, rtt);
    (rtt, 2.0 * (noise * noise + from.noise * from.noise).sqrt())
}

/// The standard error of the window's mean RTT `rtt`, as a share of it.
fn relative_noise(w: &Window, rtt: f64) -> f64 {
    if rtt > 0.0 {
        w.std_error(rtt) / rtt
    } else {
        0.0
    }
}
