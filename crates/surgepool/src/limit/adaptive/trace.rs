//! The decision trace (feature `tracing`): one `TRACE` event per measure window, with what
//! the window measured, the move it judged and where the controller went, so that a run's
//! decisions can be read back (`surgepool-lab overload --trace-limit DIR` writes them).

use super::climb::{Direction, Point};
use super::window::Window;
use super::Adaptive;

impl Adaptive {
    /// Emits the `TRACE` event of the measure window `w`, decided with `judged` pending (the
    /// move it measured, if any) and the base RTT `base` (seconds) it was judged against.
    pub(super) fn trace_decision(&self, w: &Window, judged: Option<Point>, base: Option<f64>) {
        let ms = |s: f64| s * 1000.0;
        let rtt = if w.successes > 0 {
            w.rtt_sum / f64::from(w.successes)
        } else {
            0.0
        };
        let mean_in_flight = if w.samples > 0 {
            w.in_flight_sum / f64::from(w.samples)
        } else {
            0.0
        };
        ::tracing::trace!(
            target: "surgepool::limit::adaptive",
            limit = w.limit,
            to = self.limit,
            samples = w.samples,
            successes = w.successes,
            dropped = w.dropped,
            refused = w.refused(),
            max_in_flight = w.max_in_flight,
            mean_in_flight = mean_in_flight,
            rtt_ms = ms(rtt),
            rtt_se_ms = ms(w.std_error(rtt)),
            base_ms = base.map_or(0.0, ms),
            goodput = self.objective(w),
            judged_limit = judged.map_or(0, |p| p.limit),
            judged_goodput = judged.map_or(0.0, |p| p.goodput),
            judged_rtt_ms = judged.map_or(0.0, |p| ms(p.rtt)),
            judged_refused = judged.is_some_and(|p| p.refused),
            starting = self.starting,
            up = self.direction == Direction::Up,
            step = self.step,
            ceiling = self.ceiling.unwrap_or(0),
            start_cap = self.start_cap().unwrap_or(0),
            hold_left = self.hold_left,
            probing = self.probing_from.is_some(),
            "adaptive window"
        );
    }
}
