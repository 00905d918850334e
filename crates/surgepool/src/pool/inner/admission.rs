//! Admission: whether a task gets in (room under the limit or in the queue, within the
//! memory budget, the pool still open), the line of waiting `submit` callers parked for
//! room, and where an accepted task goes: straight to a worker, or into the queue.

use super::{Deferred, Inner, JobOptions, Line, Refusal, Running, State};
use crate::pool::job::Job;
use crate::queue::Entry;
use crate::sync::Arc;

impl Inner {
    fn has_room(&self, st: &State, weight: u64) -> bool {
        // Bytes in flight past `u64::MAX` cannot be counted: such a task is refused (`Full`)
        // before it is accepted, like one over the budget.
        let Some(total) = st.bytes_in_flight.checked_add(weight) else {
            return false;
        };
        let budget_ok = self
            .settings
            .memory_budget
            .map_or(true, |budget| total <= budget);
        budget_ok && (self.limiter.in_flight() < self.limiter.limit() || st.queue.has_room())
    }

    /// Tries to accept `future` right now. `make` turns the admitted future into its job
    /// (and what the caller gets back); it runs only once the future is admitted, so a
    /// refusal hands `future` back untouched.
    ///
    /// `line`: the caller is a waiting `submit`. It is admitted only at the head of the line
    /// (nobody barges past parked callers), and a `Full` answer puts it in the line, or
    /// refreshes its waker there, under the same lock as the failed attempt, so no room can
    /// come unnoticed in between; that `Full` is not counted, as the wait goes on (its final
    /// outcome is counted).
    pub(crate) fn try_admit<F, R>(
        self: &Arc<Self>,
        future: F,
        make: impl FnOnce(F) -> (Job, R),
        options: JobOptions,
        line: Option<Line<'_>>,
    ) -> Result<R, (F, Refusal)> {
        let mut deferred = Deferred::default();
        // Read before taking the lock, to keep the clock out of the critical section.
        let now = self.settings.clock.now();
        let result = {
            let mut st = self.state();
            if st.closed {
                st.acct.reject();
                return Err((future, Refusal::Closed));
            }
            let me = line.as_ref().and_then(|l| l.id);
            let my_turn = match (st.waiters.front(), me) {
                (None, _) => true,
                (Some((head, _)), Some(me)) => *head == me,
                (Some(_), None) => false,
            };
            if !my_turn || !self.has_room(&st, options.weight) {
                let Some(line) = line else {
                    st.acct.reject();
                    return Err((future, Refusal::Full));
                };
                let id = st.join_line(line);
                return Err((future, Refusal::InLine(id)));
            }
            if let Some(me) = me {
                st.waiters.retain(|(id, _)| *id != me);
            }
            let (job, made) = make(future);
            st.acct.accept();
            st.bytes_in_flight += options.weight;
            if self.limiter.try_acquire_raw() {
                st.running += 1;
                // It waited zero: record it, or the queue-wait figures would describe only
                // the tasks that queued (a median of the unlucky ones).
                st.acct.latencies.record_queue_wait(0);
                let running = Running {
                    job,
                    accepted: now,
                    started: now,
                    weight: options.weight,
                };
                let d = self.hand_to_worker(&mut st, running);
                deferred.dispatch(d);
            } else {
                st.queue.push(Entry {
                    job,
                    enqueued: now,
                    deadline: options.deadline.map(|d| self.settings.clock.at(d)),
                    weight: options.weight,
                });
            }
            // Room may remain for the next parked submitter.
            self.wake_next_waiter(&mut st, &mut deferred);
            Ok(made)
        };
        self.carry_out(deferred);
        result
    }

    /// Counts a rejection that a waiting `submit` ends with (timeout, or closed).
    pub(crate) fn count_rejection(&self) {
        self.state().acct.reject();
    }

    pub(super) fn wake_next_waiter(&self, st: &mut State, deferred: &mut Deferred) {
        if !st.waiters.is_empty() && (st.closed || self.has_room(st, 0)) {
            if st.closed {
                deferred
                    .rest()
                    .wake
                    .extend(st.waiters.iter().map(|(_, w)| w.clone()));
            } else if let Some((_, waker)) = st.waiters.front() {
                deferred.wake = Some(waker.clone());
            }
        }
    }

    /// A parked submitter left (admitted elsewhere, timed out or cancelled).
    pub(crate) fn unpark_waiter(self: &Arc<Self>, id: u64) {
        let mut deferred = Deferred::default();
        {
            let mut st = self.state();
            let was_head = st.waiters.front().is_some_and(|(i, _)| *i == id);
            st.waiters.retain(|(i, _)| *i != id);
            if was_head {
                // It may have been woken for room it did not take: pass it on.
                self.wake_next_waiter(&mut st, &mut deferred);
            }
        }
        self.carry_out(deferred);
    }
}

impl State {
    /// Puts a waiting `submit` in the line (or refreshes its waker there); returns its id.
    fn join_line(&mut self, line: Line<'_>) -> u64 {
        if let Some(id) = line.id {
            if let Some((_, waker)) = self.waiters.iter_mut().find(|(i, _)| *i == id) {
                if !waker.will_wake(line.waker) {
                    *waker = line.waker.clone();
                }
                return id;
            }
        }
        let id = self.next_waiter;
        self.next_waiter += 1;
        self.waiters.push_back((id, line.waker.clone()));
        id
    }
}
