//! Handing tasks to workers: to an idle worker or a new one, from the queue whenever slots
//! are free, and the work deferred until the lock is released (waking or spawning workers,
//! ending shed tasks, waking submitters).

use super::{Deferred, Dispatch, Inner, Running, State};
use crate::clock::Stamp;
use crate::error::TaskError;
use crate::pool::job::Job;
use crate::pool::worker::Parker;
use crate::queue::Entry;
use crate::sync::Arc;

impl Inner {
    /// Gives a task that holds a slot to an idle worker, or to a new one.
    pub(super) fn hand_to_worker(&self, st: &mut State, running: Running) -> Dispatch {
        if let Some(parker) = st.idle.pop() {
            match parker.give(running) {
                Some(waker) => Dispatch::Wake(waker),
                None => Dispatch::None,
            }
        } else {
            let parker = Arc::new(Parker::new());
            st.workers += 1;
            st.all.push(parker.clone());
            Dispatch::Spawn(parker, running)
        }
    }

    /// Starts queued tasks while slots are free; the first may go to `me` (a worker that
    /// just finished), the rest to idle or new workers. `held`: the caller passes on a slot
    /// it holds (released here if no queued task takes it).
    pub(super) fn start_queued(
        &self,
        st: &mut State,
        now: Stamp,
        deferred: &mut Deferred,
        mut me: Option<&mut Option<Running>>,
        mut held: bool,
    ) {
        loop {
            let State {
                queue,
                acct,
                bytes_in_flight,
                ..
            } = &mut *st;
            let on_shed = |entry: Entry<Job>, reason| {
                *bytes_in_flight -= entry.weight;
                deferred.rest().shed.push((entry.job, reason));
            };
            let Some(entry) = queue.next_runnable(now, &self.limiter, &mut held, acct, on_shed)
            else {
                break;
            };
            st.running += 1;
            let running = Running {
                job: entry.job,
                accepted: entry.enqueued,
                started: now,
                weight: entry.weight,
            };
            match me.as_deref_mut() {
                Some(slot @ None) => *slot = Some(running),
                _ => {
                    let d = self.hand_to_worker(st, running);
                    deferred.dispatch(d);
                }
            }
        }
        if held {
            self.limiter.free_raw();
        }
        self.wake_next_waiter(st, deferred);
        self.notify_if_drained(st);
    }

    pub(super) fn carry_out(self: &Arc<Self>, deferred: Deferred) {
        if let Some(dispatch) = deferred.dispatch {
            self.run_dispatch(dispatch);
        }
        if let Some(rest) = deferred.rest {
            for dispatch in rest.dispatch {
                self.run_dispatch(dispatch);
            }
            let shed = rest.shed.len() as u64;
            for (job, reason) in rest.shed {
                crate::trace::event!(debug, pool = %self.settings.name, reason = ?reason, "task shed");
                job.finish_unrun(TaskError::shed(reason));
            }
            self.publish_ended(shed);
            for waker in rest.wake {
                waker.wake();
            }
        }
        if let Some(waker) = deferred.wake {
            waker.wake();
        }
    }

    fn run_dispatch(self: &Arc<Self>, dispatch: Dispatch) {
        match dispatch {
            Dispatch::None => {}
            Dispatch::Wake(waker) => waker.wake(),
            Dispatch::Spawn(parker, running) => self.spawn_worker(parker, Some(running)),
        }
    }
}
