//! Shared by the fuzz targets.

#[allow(dead_code)]
pub mod model;

use std::future::Future;
use std::panic;
use std::sync::Once;

/// The payload of every panic a target provokes on purpose (in a task or a closure).
pub const INTENDED: &str = "surgepool-fuzz: intended panic";

/// libFuzzer's panic hook aborts the process on *any* panic, caught or not, so that a
/// panic is reported as a crash. The pools catch the panics of user code by design, and
/// the targets provoke some: those (and only those, recognised by their payload) must not
/// count as crashes. Every other panic still goes to libFuzzer's hook and aborts.
pub fn allow_intended_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let libfuzzer_hook = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if message != Some(INTENDED) {
                libfuzzer_hook(info);
            }
        }));
    });
}

// Not every target provokes panics.
#[allow(dead_code)]
/// Panics with the payload [`allow_intended_panics`] lets through.
pub fn intended_panic() -> ! {
    panic::panic_any(INTENDED)
}

// The blocking pool's target runs without a runtime.
#[allow(dead_code)]
/// Runs one input's future on a current-thread runtime with paused time (no input waits in
/// real time, so none can hang the target), with the intended panics let through.
pub fn run_paused<F: Future>(run: F) -> F::Output {
    allow_intended_panics();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds");
    runtime.block_on(run)
}
