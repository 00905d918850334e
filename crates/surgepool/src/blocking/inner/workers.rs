//! The worker threads' lives as the pool's state sees them: starting (or the OS refusing
//! one), idling, retiring, and ending because their own code panicked, each counted
//! exactly once.

use tokio::time::Instant;

use super::{Dispatch, IdleDecision, Inner, Later, Running};
use crate::accounting::Outcome;
use crate::blocking::worker::{self, ThreadParker};
use crate::error::TaskError;
use crate::limit::Outcome as LimitOutcome;
use crate::sync::Arc;

impl Inner {
    pub(super) fn spawn_thread(
        self: &Arc<Self>,
        parker: Arc<ThreadParker>,
        first: Option<Running>,
        n: u64,
    ) {
        let inner = self.clone();
        let thread_parker = parker.clone();
        let mut builder =
            crate::sync::thread::Builder::new().name(format!("{}-{n}", self.settings.thread_name));
        if let Some(size) = self.settings.stack_size {
            builder = builder.stack_size(size);
        }
        // The first job travels in the parker, so a failed spawn can take it back.
        if let Some(running) = first {
            parker.give(running);
        }
        if builder
            .spawn(move || worker::run(inner, thread_parker))
            .is_err()
        {
            self.spawn_failed(&parker);
        }
    }

    /// The OS refused a thread: the task it was for ends as cancelled, nothing is lost.
    fn spawn_failed(self: &Arc<Self>, parker: &Arc<ThreadParker>) {
        let job = parker.take();
        {
            let mut st = self.state();
            st.workers -= 1;
            st.idle.retain(|p| !Arc::ptr_eq(p, parker));
            if job.is_some() {
                st.running -= 1;
                st.acct.finish(Outcome::Cancelled, None);
                self.limiter
                    .release_raw(LimitOutcome::Ignored, Instant::now());
            }
        }
        if let Some(running) = job {
            running.job.finish_unrun(TaskError::cancelled());
            self.publish_ended(1);
        }
        // Rare: wake every watcher unconditionally.
        self.changed.notify_all();
    }

    /// The thread's own code panicked (not a closure: their panics, and those of their
    /// destructors, are caught where they happen). The thread ends, counted out; the closure
    /// it held next goes to another thread, and one it was still running ends as panicked.
    /// Called from the thread's guard, while it unwinds, never under the pool's lock.
    pub(crate) fn thread_panicked(
        self: &Arc<Self>,
        parker: &Arc<ThreadParker>,
        next: Option<Running>,
        current: Option<Running>,
    ) {
        let mut later = Later::default();
        let ended = {
            let mut st = self.state();
            if let Some(i) = st.idle.iter().position(|p| Arc::ptr_eq(p, parker)) {
                st.idle.swap_remove(i);
            }
            // `close` counts idle threads out as it tells them to end: never count twice.
            if !parker.told_to_exit() {
                st.workers -= 1;
            }
            // Each still holds its slot and is counted as running: only its thread changes.
            for running in next.into_iter().chain(parker.take()) {
                if let Dispatch::Spawn(p, r, n) = self.hand_to_worker(&mut st, running) {
                    later.spawns.push((p, r, n));
                }
            }
            let ended = current.inspect(|_| {
                st.running -= 1;
                st.acct.finish(Outcome::Panicked, None);
            });
            let now = self.settings.clock.now();
            // The freed slot may start a queued closure; this also wakes a drain's waiter.
            self.start_queued(&mut st, now, ended.is_some(), None, &mut later);
            ended
        };
        if let Some(running) = ended {
            running.job.finish_unrun(TaskError::panic_without_payload());
            self.publish_ended(1);
        }
        self.carry_out(later);
    }

    pub(crate) fn idle_timeout(&self, parker: &Arc<ThreadParker>) -> IdleDecision {
        let mut st = self.state();
        let Some(index) = st.idle.iter().position(|p| Arc::ptr_eq(p, parker)) else {
            return IdleDecision::TaskArrived;
        };
        if st.closed || st.workers > self.settings.min_workers {
            st.idle.swap_remove(index);
            st.workers -= 1;
            IdleDecision::Retire
        } else {
            IdleDecision::Stay
        }
    }

    pub(crate) fn idle_timer_needed(&self) -> bool {
        self.state().workers > self.settings.min_workers
    }
}
