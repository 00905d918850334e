//! The default controller behind [`Limit::adaptive`]: a latency gradient against a
//! periodically re-measured minimum RTT (Envoy's adaptive concurrency filter) that guards a
//! throughput hill climber (the .NET thread pool's idea), started by TCP-style slow start.
//! `limit/README.md` gives the formulas, the reasons and the sources.
//!
//! Samples are folded into windows of about one round trip (every slot turned over once,
//! and at least [`MIN_WINDOW_SAMPLES`]; more when RTTs are noisy, see `noise_samples`,
//! unless the window already rejects the move under test, see `verdict_settled`, or, in
//! slow start, already keeps its doubling, see `start_settled`).
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
//!    start, up to the limit before the cuts × the base over the old one (Little's law: no
//!    more concurrency than the slower work needs at the same capacity; read from the
//!    current base, so a later window at a lower RTT lowers the cap too); the climber's
//!    steps go on from there. At the minimum, where a cut changes nothing, do so at once;
//!    and once a run of latency cuts has taken three quarters of the limit, judge the run
//!    as a whole (the RTT must have fallen to about 0.6× the highest that caused a cut of
//!    the run). When such a deep run ends, search again from slow start, up to the limit
//!    the run began from; when a shorter run ends with the RTT still above the base, the
//!    climber's next move goes down to where that queue would vanish
//!    (`⌈limit × base / r⌉`), judged by goodput like any move.
//! 4. **Periodic re-measure** (every `probe_interval`, jittered, once the climber's move
//!    under test is judged): run one window at half the limit and take its RTT as the
//!    base, so the base cannot drift up forever nor stay stuck at an old low. When the
//!    limit held nothing back in the last window (no refusals, in flight below 90 % of
//!    it), the demand sets the concurrency: take that window's RTT as the base instead of
//!    refusing the callers above the half.
//! 5. **Hill climbing**: move the limit by a step, keep the move only if goodput followed it
//!    (goodput by Little's law: the mean in-flight count the window's jobs saw over their
//!    mean time in a slot, times the share that succeeded; an increase must win at least
//!    `gain`, default ½, of its proportional gain, a decrease
//!    may lose at most that share of its proportional loss), double the step after a kept
//!    move (slow start when it keeps winning; a down-move takes at most half the limit),
//!    bisect after a rejected large up-move, and after a rejected small move go back, flip
//!    direction and hold for 1, 2, 4, 8, 16 windows before trying again (4 times as long
//!    before repeating a rejected down-move of a quarter of the limit or more; a rejected
//!    down-move whose knee would have raised the latency past the tolerance, 2 → 1, is
//!    not repeated from that limit: the latency guard answers it). An up-move
//!    nobody came for is kept untested, and one whose goodput did not follow is kept if
//!    work was refused, before the move or during it, and latency stayed flat (callers
//!    honouring `Retry-After` come back later; bursts of a demand just above the limit
//!    are served by the move, and serving a few % more is less than half a move's gain);
//!    neither doubles the step. A verdict is void when the RTT moved further than the move
//!    can move it (up-moves rejected on a window slower by more than twice the move,
//!    down-moves kept on one faster by as much, beyond the noise): the move is undone and
//!    tested again after the same hold, at most twice in a row.
//!
//! A rise of more than 64 slots is handed to the limiter paced, a few slots per finished job
//! over about one round (a cut at once), so that a doubling does not admit hundreds of jobs
//! in one instant.
//!
//! [`MIN_WINDOW_SAMPLES`]: window::MIN_WINDOW_SAMPLES

mod climb;
mod decide;
mod window;

use tokio::time::Instant;

use super::adaptive_config::AdaptiveConfig;
use super::algorithm::{self, Algorithm, Rng, Sample};
use climb::{Direction, Point};
use window::{Window, WindowKind};

/// The smallest hill-climbing step, as a share of the limit (at least 1).
const STEP_FRACTION: f64 = 0.05;
/// A rise of the limit by at most this many slots is admitted at once; a larger one is
/// paced (see [`Adaptive::pace`]). Pacing every rise cost the simulated CPU work time near
/// its knee (8 and 16 cores: within 10 % of it 83 → 75 % and 79 → 70 % of the time, mean
/// of six noise seeds), pacing rises above 16 slots the simulated k = 16 whose service time
/// doubles (within 10 % 85 → 34 %); above 64, no simulated CPU-work model is affected. A
/// burst of a few dozen jobs has no transient worth spreading.
const PACE_ABOVE: usize = 64;
/// A latency cut is judged, and a flat latency is told from a rising one, by half the
/// proportional change (the climber's own bar is the `gain` setting).
const HALF: f64 = 0.5;
/// With a latency objective stated, the climber's bar is this share of `gain`: its goodput
/// counts only the jobs served in time, so a move whose extra latency pushes jobs past the
/// objective already loses what it costs, and the bar need only tell a gain from noise.
const SLO_BAR_SHARE: f64 = 0.2;

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
    /// The limit before the current run's first *latency* cut, and the highest RTT that
    /// caused one of its latency cuts (back-offs for drops take no part: their RTT is not
    /// the window's, and their depth says nothing about the latency).
    deep_from: Option<(usize, f64)>,
    /// The point a pending hill-climbing move started from.
    moved_from: Option<Point>,
    direction: Direction,
    step: usize,
    /// While bisecting after a rejected large up-move: the limit that was rejected.
    ceiling: Option<usize>,
    /// Slow start: no move rejected and no cut yet.
    starting: bool,
    /// After a new base, or after a deep run of cuts ended: the limit the cuts began from
    /// and the base then. Slow start stops at that limit scaled by Little's law, the
    /// current base over that one (see [`Adaptive::start_cap`]); past it the climber goes
    /// on with small steps.
    restart_from: Option<(usize, f64)>,
    /// The pending (or next) down-move goes to where the last window's queue would vanish
    /// (after a run of latency cuts): if kept, the climber goes on from there with small
    /// steps instead of doubling this one.
    to_queue_free: bool,
    hold: u32,
    hold_left: u32,
    /// The limit from which the last rejected down-move started.
    down_rejected_at: Option<usize>,
    /// Verdicts voided in a row (see `climb::void_verdict`).
    voided: u32,
    /// The limit the limiter enforces: it follows `limit` down at once and up by at most
    /// `ramp` per finished job (see [`Adaptive::pace`]).
    admitted: usize,
    /// Slots `admitted` may gain per finished job while it catches up with `limit`.
    ramp: usize,
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
            deep_from: None,
            moved_from: None,
            direction: Direction::Up,
            // Slow start: the first moves double the limit for as long as goodput follows.
            step: limit,
            ceiling: None,
            starting: true,
            restart_from: None,
            to_queue_free: false,
            hold: 1,
            hold_left: 0,
            down_rejected_at: None,
            voided: 0,
            admitted: limit,
            ramp: 1,
            rng: Rng::new(),
        }
    }

    /// Whether the stated latency objective is in reach: above the base RTT. (Below it no
    /// job is served in time whatever the limit, and goodput within it says nothing.)
    fn slo_in_reach(&self) -> bool {
        match (self.config.slo, self.base) {
            (Some(slo), Some(base)) => base < slo.as_secs_f64(),
            _ => false,
        }
    }

    /// What the hill climber maximises over the window `w`: its goodput, counting only the
    /// jobs served within the latency objective when one is stated and in reach.
    fn objective(&self, w: &Window) -> f64 {
        let goodput = w.goodput();
        if self.slo_in_reach() && w.successes > 0 {
            goodput * f64::from(w.within_slo) / f64::from(w.successes)
        } else {
            goodput
        }
    }

    /// The share of its proportional goodput change a move must win: `gain`, or a fifth of
    /// it while a latency objective is in reach.
    fn bar_gain(&self) -> f64 {
        if self.slo_in_reach() {
            self.config.gain * SLO_BAR_SHARE
        } else {
            self.config.gain
        }
    }

    /// Where slow start after a new base (or a deep run of cuts) stops: the limit the cuts
    /// began from × the current base / the base then (Little's law: work that got that many
    /// times slower at the same capacity needs that many times the concurrency; with the
    /// base unchanged, the limit the cuts began from). Read from the current
    /// base, not the one the new base was taken at: a window at a lower RTT lowers the
    /// base, and the cap with it, so a rebase on a latency spike that the next windows
    /// refute does not double on to the spike's ratio.
    fn start_cap(&self) -> Option<usize> {
        let (from, old) = self.restart_from?;
        let ratio = self.base? / old;
        let cap = if ratio.is_finite() && ratio > 1.0 {
            algorithm::whole(from as f64 * ratio, from, usize::MAX)
        } else {
            from
        };
        Some(cap)
    }

    fn min_step(&self) -> usize {
        ((self.limit as f64 * STEP_FRACTION) as usize).max(1)
    }

    fn set_limit(&mut self, limit: usize) {
        self.limit = limit.clamp(self.config.min, self.config.max);
    }

    /// The limit to enforce now. A cut applies at once; a rise is paced over about one
    /// round, `ramp` more slots per finished job, so that a doubling admits two jobs per
    /// completion (TCP slow start's ack clocking) instead of hundreds in one instant, whose
    /// own transient (each allocating, faulting pages in, arming timers at once) raised the
    /// latency of the very windows that judge the move. The settle round after a move lasts
    /// a round of the new limit's jobs (or two rounds' time, when callers bring less work),
    /// so the rise is normally complete before the move is judged.
    fn pace(&mut self) -> usize {
        self.admitted = if self.limit <= self.admitted {
            self.limit
        } else {
            self.admitted.saturating_add(self.ramp).min(self.limit)
        };
        self.admitted
    }
}

impl Algorithm for Adaptive {
    fn update(&mut self, sample: &Sample) -> usize {
        let now = sample.now;
        let limit = self.limit;
        let w = self.window.get_or_insert_with(|| {
            let start = now.checked_sub(sample.rtt).unwrap_or(now);
            Window::empty(WindowKind::Measure, limit, start, sample.refused)
        });
        // Saturating: a window of 4 billion samples cannot happen in practice, but a count
        // must never panic inside a pool's `finish`.
        w.samples = w.samples.saturating_add(1);
        if sample.dropped {
            w.dropped = w.dropped.saturating_add(1);
            w.drop_rtt_sum += sample.rtt.as_secs_f64();
        } else {
            w.successes = w.successes.saturating_add(1);
            if self.config.slo.is_some_and(|slo| sample.rtt <= slo) {
                w.within_slo = w.within_slo.saturating_add(1);
            }
            let rtt = sample.rtt.as_secs_f64();
            w.rtt_sum += rtt;
            w.rtt_sq_sum += rtt * rtt;
        }
        w.max_in_flight = w.max_in_flight.max(sample.in_flight);
        w.in_flight_sum += sample.in_flight as f64;
        if w.kind == WindowKind::Settle && sample.in_flight > w.limit {
            // Still draining to a lower limit: the settle round has not begun.
            w.samples = 0;
            w.in_flight_sum = 0.0;
            w.start = now;
        }
        w.refused_to = sample.refused;
        let w = *w;
        if !self.window_done(&w, now) {
            return self.pace();
        }
        let changed = match w.kind {
            WindowKind::Settle => false,
            WindowKind::Measure => {
                #[cfg(feature = "tracing")]
                let (judged, base) = (self.moved_from, self.base);
                let changed = self.decide(&w, now);
                #[cfg(feature = "tracing")]
                self.trace_decision(&w, judged, base);
                changed
            }
        };
        let kind = if changed {
            WindowKind::Settle
        } else {
            WindowKind::Measure
        };
        self.window = Some(Window::empty(kind, self.limit, now, sample.refused));
        if self.limit > self.admitted {
            // Spread a large rise over the jobs of one round at the limit admitted now; a
            // small one is admitted at once.
            let rise = self.limit - self.admitted;
            self.ramp = if rise <= PACE_ABOVE {
                rise
            } else {
                rise.div_ceil(self.admitted.max(1))
            };
        }
        self.pace()
    }
}

#[cfg(feature = "tracing")]
mod trace;

#[cfg(test)]
mod tests;
