//! The workers' lives as the pool's state sees them: starting, idling, retiring, and
//! ending unexpectedly (their runtime shut down, or their own code panicked), each
//! counted exactly once.

use super::{AfterRun, Deferred, Inner, Running, State};
use crate::accounting::Outcome;
use crate::error::TaskError;
use crate::pool::job::Job;
use crate::pool::task::SharedTask;
use crate::pool::worker::{self, Parker, Worker};
use crate::sync::Arc;

impl Inner {
    pub(super) fn spawn_worker(self: &Arc<Self>, parker: Arc<Parker>, first: Option<Running>) {
        let worker = Worker {
            inner: self.clone(),
            parker,
            next: first,
            current: None,
            exited: false,
            suspended: true,
            unpublished: false,
        };
        // The JoinHandle is dropped: workers are detached and end by themselves.
        drop(self.runtime.spawn(worker::run(worker)));
    }

    /// A worker's future was dropped unfinished: the runtime shut down (or was already
    /// down when the worker was spawned). Nothing will run this pool's tasks any more, so it
    /// closes, and every task the worker held and every queued one is cancelled and
    /// counted. Called from `Worker::drop`, never under the pool's lock.
    pub(crate) fn worker_lost(
        self: &Arc<Self>,
        parker: &Arc<Parker>,
        next: Option<Running>,
        current: Option<(u64, Option<SharedTask>)>,
    ) {
        let mut deferred = Deferred::default();
        let mut ended: Vec<Job> = Vec::new();
        let mut handles: Vec<SharedTask> = Vec::new();
        let mut count = 0;
        {
            let mut st = self.state();
            if let Some(i) = st.idle.iter().position(|p| Arc::ptr_eq(p, parker)) {
                st.idle.swap_remove(i);
            }
            // A no-op if `close` already counted this (idle) worker out.
            self.remove_worker(&mut st, parker);
            let mut held: Vec<(u64, Option<Job>)> = Vec::new();
            if let Some((weight, task)) = current {
                held.push((weight, None));
                handles.extend(task);
            }
            for running in next.into_iter().chain(parker.take_job()) {
                held.push((running.weight, Some(running.job)));
            }
            for (weight, job) in held {
                st.running -= 1;
                st.bytes_in_flight -= weight;
                st.acct.finish(Outcome::Cancelled, None);
                self.limiter.free_raw();
                ended.extend(job);
                count += 1;
            }
            self.mark_closed(&mut st);
            for entry in st.queue.drain() {
                st.bytes_in_flight -= entry.weight;
                st.acct.finish(Outcome::Cancelled, None);
                ended.push(entry.job);
                count += 1;
            }
            self.wake_next_waiter(&mut st, &mut deferred);
        }
        for job in ended {
            job.finish_unrun(TaskError::cancelled());
        }
        for task in handles {
            // Its future went with the worker's frame; its handle learns it was cancelled.
            task.finish_unrun(TaskError::cancelled());
        }
        self.publish_ended(count);
        crate::trace::event!(
            warn,
            pool = %self.settings.name,
            cancelled = count,
            "the tokio runtime went away under the pool: it is closed and its tasks cancelled"
        );
        self.carry_out(deferred);
    }

    /// The worker's own code panicked: not a task (a task's panics, and those of its
    /// destructors, are caught where they happen), so something unforeseen, such as a waker
    /// that panics. Unlike `worker_lost`, the runtime is fine, so the pool stays open: the
    /// worker is counted out, the task it held next goes to another worker, and a task it
    /// was still running, if any, ends as panicked. Called from `Worker::drop`, never under
    /// the pool's lock.
    pub(crate) fn worker_panicked(
        self: &Arc<Self>,
        parker: &Arc<Parker>,
        next: Option<Running>,
        current: Option<(u64, Option<SharedTask>)>,
    ) {
        let mut deferred = Deferred::default();
        let ended = {
            let mut st = self.state();
            if let Some(i) = st.idle.iter().position(|p| Arc::ptr_eq(p, parker)) {
                st.idle.swap_remove(i);
            }
            self.remove_worker(&mut st, parker);
            // Each still holds its slot and is counted as running: only its worker changes.
            for running in next.into_iter().chain(parker.take_job()) {
                let d = self.hand_to_worker(&mut st, running);
                deferred.dispatch(d);
            }
            let ended = current.map(|(weight, task)| {
                st.running -= 1;
                st.bytes_in_flight -= weight;
                st.acct.finish(Outcome::Panicked, None);
                task
            });
            let now = self.settings.clock.now();
            // The freed slot may start a queued task; this also signals a drain.
            self.start_queued(&mut st, now, &mut deferred, None, ended.is_some());
            ended
        };
        if let Some(task) = ended {
            if let Some(task) = task {
                task.finish_unrun(TaskError::panic_without_payload());
            }
            self.publish_ended(1);
        }
        self.carry_out(deferred);
    }

    /// `n` tasks, counted as ended under the lock earlier, have now handed their outcome to
    /// their handles and dropped their user values: a shutdown waiting for the drain may
    /// return. The lock is taken only while a shutdown is under way.
    pub(crate) fn publish_ended(self: &Arc<Self>, n: u64) {
        if n == 0 {
            return;
        }
        if self.published.add(n) {
            let st = self.state();
            self.notify_if_drained(&st);
        }
    }

    pub(super) fn mark_closed(&self, st: &mut State) {
        if !st.closed {
            st.closed = true;
            st.acct.shutting_down = true;
            self.published.close();
        }
    }

    pub(super) fn idle_or_exit(&self, st: &mut State, parker: &Arc<Parker>) -> AfterRun {
        let keep = self.settings.min_workers.max(self.limiter.limit());
        if st.closed || st.workers > keep {
            self.remove_worker(st, parker);
            AfterRun::Exit
        } else {
            st.idle.push(parker.clone());
            AfterRun::Idle
        }
    }

    /// Counts a worker out, once: `close` lets idle workers go at once, and the runtime may
    /// then drop them before they run again (`worker_lost`), which must not count them twice.
    pub(super) fn remove_worker(&self, st: &mut State, parker: &Arc<Parker>) {
        if let Some(i) = st.all.iter().position(|p| Arc::ptr_eq(p, parker)) {
            st.all.swap_remove(i);
            st.workers -= 1;
        }
    }

    /// Called by an idle worker whose idle timeout fired. `None`: it retires (or, at the
    /// minimum, keeps waiting without a timer); `Some`: a task arrived meanwhile.
    pub(crate) fn idle_timeout(&self, parker: &Arc<Parker>) -> IdleDecision {
        let mut st = self.state();
        let Some(index) = st.idle.iter().position(|p| Arc::ptr_eq(p, parker)) else {
            // Not idle any more: a task was handed over while the timer fired.
            return IdleDecision::TaskArrived;
        };
        if st.closed || st.workers > self.settings.min_workers {
            st.idle.swap_remove(index);
            self.remove_worker(&mut st, parker);
            IdleDecision::Retire
        } else {
            IdleDecision::Stay
        }
    }

    /// `true` if the worker must keep an idle timer (it is above the minimum).
    pub(crate) fn idle_timer_needed(&self) -> bool {
        self.state().workers > self.settings.min_workers
    }
}

/// What an idle worker does when its timer fires.
pub(crate) enum IdleDecision {
    Retire,
    Stay,
    TaskArrived,
}
