//! `tracing` events (feature `tracing`): without the feature every macro here expands to
//! nothing, so the pools carry no tracing code at all. No span per task: a task is too
//! short-lived and too frequent for one to pay its way by default.
//!
//! | event | level | fields |
//! |---|---|---|
//! | a task was shed from the queue | `DEBUG` | `pool`, `reason` |
//! | a task panicked | `WARN` | `pool`, `panic` (the message) |
//! | the limit changed | `DEBUG` | `from`, `to` |
//! | the adaptive limit decided on a measure window (target `surgepool::limit::adaptive`) | `TRACE` | `limit`, `to`, the window's `samples`, `successes`, `dropped`, `refused`, `max_in_flight`, `mean_in_flight`, `rtt_ms`, `rtt_se_ms`, `goodput`, the `base_ms` and the move it judged (`judged_limit`, `judged_goodput`, `judged_rtt_ms`, `judged_refused`; 0 when none), and the climber's state after it (`starting`, `up`, `step`, `ceiling`, `start_cap`, `hold_left`, `probing`) |
//! | shutdown began | `INFO` | `pool` |
//! | shutdown ended | `INFO` | `pool`, `drained`, `cancelled`, `timed_out` |
//! | the runtime went away under a pool | `WARN` | `pool`, `cancelled` |

/// Emits a `tracing` event when the feature is on; nothing otherwise.
macro_rules! event {
    ($level:ident, $($rest:tt)*) => {
        #[cfg(feature = "tracing")]
        {
            ::tracing::$level!(target: "surgepool", $($rest)*);
        }
    };
}

pub(crate) use event;

/// The `on_panic` hook a pool runs: with the feature, one that emits the `WARN` event and
/// then calls the user's hook (the pools already run hooks under `catch_unwind`).
#[cfg(feature = "tracing")]
pub(crate) fn with_panic_event(
    hook: Option<crate::pool::PanicHook>,
    name: &std::sync::Arc<str>,
) -> Option<crate::pool::PanicHook> {
    let name = name.clone();
    Some(std::sync::Arc::new(move |error: &crate::TaskError| {
        ::tracing::warn!(target: "surgepool", pool = %name, panic = %error, "task panicked");
        if let Some(hook) = &hook {
            hook(error);
        }
    }))
}

/// Without the feature: the user's hook as it is.
#[cfg(not(feature = "tracing"))]
pub(crate) fn with_panic_event(
    hook: Option<crate::pool::PanicHook>,
    _name: &std::sync::Arc<str>,
) -> Option<crate::pool::PanicHook> {
    hook
}
