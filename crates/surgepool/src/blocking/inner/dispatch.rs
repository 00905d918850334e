//! Handing closures to threads: straight to an idle thread or a new one, from the queue
//! whenever a slot frees (a closure finishing, the limit growing), and the work that must
//! wait until the lock is released (ending shed closures, starting threads).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use tokio::time::Instant;

use super::{AfterRun, Dispatch, Inner, Later, Running, State};
use crate::accounting::Outcome;
use crate::blocking::task::BlockingJob;
use crate::blocking::worker::ThreadParker;
use crate::clock::Stamp;
use crate::error::TaskError;
use crate::limit::Outcome as LimitOutcome;
use crate::queue::Entry;
use crate::sync::Arc;

impl Inner {
    pub(super) fn hand_to_worker(&self, st: &mut State, running: Running) -> Dispatch {
        if let Some(parker) = st.idle.pop() {
            parker.give(running);
            Dispatch::Woken
        } else {
            let parker = Arc::new(ThreadParker::new());
            st.workers += 1;
            let n = st.next_thread;
            st.next_thread += 1;
            Dispatch::Spawn(parker, running, n)
        }
    }

    /// Called by a worker thread when its closure returned.
    pub(crate) fn finish(
        self: &Arc<Self>,
        parker: &Arc<ThreadParker>,
        done: &Running,
        outcome: Outcome,
    ) -> AfterRun {
        let at = Instant::now();
        let now = self.settings.clock.at(at);
        let run_time = now.nanos_since(done.started);
        let queue_wait = done.started.nanos_since(done.accepted);
        let limit_outcome = match outcome {
            Outcome::Completed => LimitOutcome::Success(Duration::from_nanos(run_time)),
            _ => LimitOutcome::Ignored,
        };
        let mut later = Later::default();
        let in_flight;
        let after = {
            let mut st = self.state();
            st.running -= 1;
            st.acct.finish(outcome, Some((queue_wait, run_time)));
            // With closures waiting, the slot goes straight to the next one, and the outcome
            // goes to the limiter after the lock (as in the async pool's `finish`).
            let held;
            (held, in_flight) = self.limiter.end_job_raw(!st.queue.is_empty());
            let mut mine = None;
            self.start_queued(&mut st, now, held, Some(&mut mine), &mut later);
            match mine {
                Some(running) => AfterRun::Run(running),
                None => {
                    let keep = self.settings.min_workers.max(self.limiter.limit());
                    if st.closed || st.workers > keep {
                        st.workers -= 1;
                        AfterRun::Exit
                    } else {
                        st.idle.push(parker.clone());
                        AfterRun::Idle
                    }
                }
            }
        };
        self.carry_out(later);
        // The closure is counted and its slot settled: a panicking limit algorithm must not
        // undo that (the thread would die holding its next closure), so it is caught, and
        // the limit just stays where it was.
        let grew = catch_unwind(AssertUnwindSafe(|| {
            self.limiter.sample_raw(limit_outcome, at, in_flight)
        }));
        if grew.unwrap_or(false) {
            // The limit grew: queued closures may start now rather than at the next finish.
            let now = self.settings.clock.now();
            let mut later = Later::default();
            {
                let mut st = self.state();
                self.start_queued(&mut st, now, false, None, &mut later);
            }
            self.carry_out(later);
        }
        after
    }

    /// Starts queued closures while slots are free: the first into `mine` (a thread that
    /// just finished) if given, the rest on idle or new threads. `held`: the caller passes on
    /// a slot it holds (given back here if no closure takes it). Wakes whoever waits for room
    /// or for the drain.
    pub(super) fn start_queued(
        &self,
        st: &mut State,
        now: Stamp,
        mut held: bool,
        mut mine: Option<&mut Option<Running>>,
        later: &mut Later,
    ) {
        loop {
            let State { queue, acct, .. } = &mut *st;
            let on_shed = |entry: Entry<BlockingJob>, reason| later.shed.push((entry.job, reason));
            let Some(entry) = queue.next_runnable(now, &self.limiter, &mut held, acct, on_shed)
            else {
                break;
            };
            st.running += 1;
            let running = Running {
                job: entry.job,
                accepted: entry.enqueued,
                started: now,
            };
            match mine.as_deref_mut() {
                Some(slot @ None) => *slot = Some(running),
                _ => {
                    if let Dispatch::Spawn(p, r, n) = self.hand_to_worker(st, running) {
                        later.spawns.push((p, r, n));
                    }
                }
            }
        }
        if held {
            self.limiter.free_raw();
        }
        // Room, or the end of the drain: tell whoever waits.
        self.notify_watchers(st);
    }

    /// Ends shed closures and starts threads, once the lock is released.
    pub(super) fn carry_out(self: &Arc<Self>, later: Later) {
        let shed = later.shed.len() as u64;
        for (job, reason) in later.shed {
            crate::trace::event!(debug, pool = %self.settings.name, reason = ?reason, "task shed");
            job.finish_unrun(TaskError::shed(reason));
        }
        self.publish_ended(shed);
        for (p, r, n) in later.spawns {
            self.spawn_thread(p, Some(r), n);
        }
    }
}
