//! The FIFO queue of tasks parked in [`Limiter::acquire`](super::Limiter::acquire), and the
//! future that parks in it.
//!
//! Fairness comes from two rules (issue: a freed slot went to whoever called `try_acquire`
//! first, so 3 tasks took 58k acquisitions while 61 waited 4 s):
//! - **No barging.** While anyone is parked, `try_acquire` refuses, even under the limit.
//! - **Hand-off.** A slot freed while someone is parked is not given back to the count; it
//!   passes, still taken, to the oldest waiter (unless the limit shrank below what is held,
//!   then it is freed). A waiter dropped after it was handed a slot passes the slot on.
//!
//! Waiters are keyed by a ticket in a `BTreeMap`: FIFO is ticket order, a cancelled waiter
//! is removed in O(log n), and a waiter learns it was granted when its ticket is gone.
//! Wakers are woken under the queue's lock: waking only schedules a task, it never runs it.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::limiter::Shared;
use super::permit::Permit;
use crate::sync::{lock, Arc, Ordering};

/// Parked tasks, oldest first.
#[derive(Default)]
pub(super) struct WaitQueue {
    /// Ticket -> the waker to call when the ticket is granted a slot.
    parked: BTreeMap<u64, Option<Waker>>,
    next_ticket: u64,
}

impl Shared {
    /// Grants slots to the oldest waiters while the limit has room. Called with the queue
    /// locked, after anything that can make room: a release that did not hand off, a limit
    /// that grew, a new waiter (which may find room that a racing release left).
    pub(super) fn dispatch_locked(&self, queue: &mut WaitQueue) {
        while let Some(first) = queue.parked.first_entry() {
            if !self.take_slot() {
                break;
            }
            let waker = first.remove();
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    /// [`dispatch_locked`](Self::dispatch_locked), taking the lock.
    pub(super) fn dispatch(&self) {
        self.dispatch_locked(&mut lock(&self.queue));
    }

    /// Passes a slot that is being released straight to the oldest waiter, if there is one
    /// and the limit still covers the slot; `false` when the caller must free it instead.
    pub(super) fn hand_off(&self) -> bool {
        let mut queue = lock(&self.queue);
        let Some(first) = queue.parked.first_entry() else {
            return false;
        };
        // The slot stays counted in `in_flight`; it may go on only if that count is still
        // within the limit (the limit may have shrunk while the slot was held).
        if self.in_flight.load(Ordering::SeqCst) > self.limit.load(Ordering::SeqCst) {
            return false;
        }
        let waker = first.remove();
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }
}

/// The future behind [`Limiter::acquire`](super::Limiter::acquire).
pub(super) struct Acquire {
    shared: Arc<Shared>,
    /// The ticket while parked; `None` before parking and once the permit was returned.
    ticket: Option<u64>,
}

impl Acquire {
    pub(super) fn new(shared: Arc<Shared>) -> Acquire {
        Acquire {
            shared,
            ticket: None,
        }
    }

    fn permit(&self) -> Permit {
        Permit::new(self.shared.clone())
    }
}

impl Future for Acquire {
    type Output = Permit;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit> {
        let this = self.get_mut();
        let shared = &*this.shared;
        let Some(ticket) = this.ticket else {
            // First poll: the fast path refuses while others wait, so newcomers queue
            // behind them.
            if shared.try_acquire_raw() {
                return Poll::Ready(this.permit());
            }
            let mut queue = lock(&shared.queue);
            let ticket = queue.next_ticket;
            queue.next_ticket += 1;
            queue.parked.insert(ticket, Some(cx.waker().clone()));
            // SeqCst, before the dispatch's look at `in_flight`: a release that freed a slot
            // without seeing this waiter is seen by the dispatch below (no lost wake-up).
            shared.waiters.fetch_add(1, Ordering::SeqCst);
            shared.dispatch_locked(&mut queue);
            if queue.parked.contains_key(&ticket) {
                this.ticket = Some(ticket);
                return Poll::Pending;
            }
            drop(queue);
            return Poll::Ready(this.permit());
        };
        let mut queue = lock(&shared.queue);
        match queue.parked.get_mut(&ticket) {
            Some(waker) => {
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            None => {
                // Granted: the slot was handed to this ticket, already counted.
                drop(queue);
                this.ticket = None;
                Poll::Ready(this.permit())
            }
        }
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        let shared = &*self.shared;
        let mut queue = lock(&shared.queue);
        if queue.parked.remove(&ticket).is_some() {
            shared.waiters.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        drop(queue);
        // Cancelled after being handed a slot: pass it on (to the next waiter, or back).
        shared.free_slot();
    }
}

impl fmt::Debug for Acquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}
