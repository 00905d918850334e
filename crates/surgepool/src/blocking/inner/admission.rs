//! Admission: whether a closure gets in (room under the limit or in the queue, the pool
//! still open), waiting in line for room when the caller allows it, and what happens to an
//! accepted closure: it starts on a thread at once or waits in the queue.

use std::time::Duration;

use tokio::time::Instant;

use super::{Dispatch, Inner, Refusal, Running, State};
use crate::blocking::task::BlockingJob;
use crate::clock::Stamp;
use crate::queue::Entry;
use crate::sync::{Arc, MutexGuard};

impl Inner {
    fn has_room(&self, st: &State) -> bool {
        self.limiter.in_flight() < self.limiter.limit() || st.queue.has_room()
    }

    /// Tries to accept `f`. With `wait`, blocks the calling thread until room comes, the
    /// pool closes, or `wait` has passed since the call.
    ///
    /// `make` turns the accepted `f` into the job the pool keeps and what the caller gets
    /// (a handle, or nothing for a detached closure). It is called only once `f` is
    /// accepted, so a refusal hands `f` back untouched and costs no allocation.
    pub(crate) fn admit<F, R>(
        self: &Arc<Self>,
        f: F,
        deadline: Option<Instant>,
        wait: Option<Duration>,
        make: impl FnOnce(F) -> (BlockingJob, R),
    ) -> Result<R, (F, Refusal)> {
        let (st, at) = match self.wait_for_room(wait) {
            Ok(room) => room,
            Err(refusal) => return Err((f, refusal)),
        };
        let now = self.settings.clock.at(at);
        let (job, admitted) = make(f);
        self.accept(st, now, job, deadline);
        Ok(admitted)
    }

    /// `admit`'s turn in line: returns the lock, held, once this caller may take the room
    /// there is, with the instant it is admitted at; or why it is refused, counted as
    /// rejected.
    fn wait_for_room(
        &self,
        wait: Option<Duration>,
    ) -> Result<(MutexGuard<'_, State>, Instant), Refusal> {
        // Read before taking the lock, to keep the clock out of the critical section (read
        // again below if the caller had to wait). The wait's end is reckoned from it too, and
        // only once the pool turns out to be full.
        let mut at = Instant::now();
        let mut until: Option<Instant> = None;
        let mut st = self.state();
        let mut me: Option<u64> = None;
        loop {
            if st.closed {
                st.acct.reject();
                if let Some(id) = me {
                    st.waiters.retain(|w| *w != id);
                }
                return Err(Refusal::Closed);
            }
            let my_turn = match (st.waiters.front(), me) {
                (None, _) => true,
                (Some(head), Some(id)) => *head == id,
                (Some(_), None) => false,
            };
            if my_turn && self.has_room(&st) {
                if let Some(id) = me {
                    st.waiters.retain(|w| *w != id);
                }
                break;
            }
            let Some(wait) = wait else {
                st.acct.reject();
                return Err(Refusal::Full);
            };
            // A wait too long to represent: about 30 years is forever enough.
            let until = *until.get_or_insert_with(|| {
                at.checked_add(wait)
                    .unwrap_or_else(|| at + Duration::from_secs(1 << 30))
            });
            if me.is_some() {
                at = Instant::now();
            }
            let now = at;
            if now >= until {
                st.acct.reject();
                if let Some(id) = me {
                    st.waiters.retain(|w| *w != id);
                }
                // Room may have come for the next in line.
                self.notify_watchers(&st);
                return Err(Refusal::Timeout);
            }
            if me.is_none() {
                let id = st.next_waiter;
                st.next_waiter += 1;
                st.waiters.push_back(id);
                me = Some(id);
            }
            st = self.watch(st, Some(until - now));
        }
        if me.is_some() {
            at = Instant::now();
        }
        Ok((st, at))
    }

    /// Counts the accepted `job` and starts it on a thread if a slot is free, or queues it;
    /// a thread it needs is started once the lock is released.
    fn accept(
        self: &Arc<Self>,
        mut st: MutexGuard<'_, State>,
        now: Stamp,
        job: BlockingJob,
        deadline: Option<Instant>,
    ) {
        st.acct.accept();
        let dispatch = if self.limiter.try_acquire_raw() {
            st.running += 1;
            // It waited zero: record it, so queue-wait figures cover every task that ran.
            st.acct.latencies.record_queue_wait(0);
            Some(self.hand_to_worker(
                &mut st,
                Running {
                    job,
                    accepted: now,
                    started: now,
                },
            ))
        } else {
            st.queue.push(Entry {
                job,
                enqueued: now,
                deadline: deadline.map(|d| self.settings.clock.at(d)),
                weight: 0,
            });
            None
        };
        if !st.waiters.is_empty() {
            self.notify_watchers(&st);
        }
        drop(st);
        if let Some(Dispatch::Spawn(parker, running, n)) = dispatch {
            self.spawn_thread(parker, Some(running), n);
        }
    }
}
