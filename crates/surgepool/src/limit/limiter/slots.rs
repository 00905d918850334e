//! Taking and giving back slots: one compare-and-swap of the in-flight count against the
//! limit, a release that hands the slot straight to the oldest waiter, and a limit change
//! that gives the room it makes to waiters first.

use tokio::time::Instant;

use super::{Outcome, Shared};
use crate::sync::{AtomicUsize, Ordering};

impl Shared {
    /// Releases one slot; `now` is the caller's clock reading if it has one.
    pub(in crate::limit) fn release(&self, outcome: Outcome, now: Option<Instant>) {
        // Sample before releasing: in-flight as the job saw it, itself included.
        self.sample(outcome, now);
        self.free_slot();
    }

    /// Takes a slot if in-flight work is under the limit (one CAS), ignoring waiters.
    pub(in crate::limit) fn take_slot(&self) -> bool {
        // SeqCst (free on x86): a parking `acquire` raises `waiters` and then looks at
        // `in_flight` here, while `free_slot` lowers `in_flight` and then looks at `waiters`;
        // with both sides sequentially consistent, at least one of them sees the other (no
        // lost wake-up).
        let mut current = seq_cst_read(&self.in_flight);
        loop {
            if current >= self.limit.load(Ordering::SeqCst) {
                return false;
            }
            match self.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Admission for callers that do not wait: refused while tasks wait in `acquire`, so a
    /// slot freed for a waiter cannot be taken in front of it (no barging).
    pub(in crate::limit) fn try_acquire_raw(&self) -> bool {
        if self.waiters.load(Ordering::SeqCst) == 0 && self.take_slot() {
            return true;
        }
        self.counters.refused.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Gives one slot back: straight to the oldest waiter if there is one, else to the count.
    pub(in crate::limit) fn free_slot(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 && self.hand_off() {
            return;
        }
        // SeqCst pairs with the waiter's raise of `waiters` (see `take_slot`): a waiter that
        // parked after the look above is seen here and served by the dispatch.
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if seq_cst_read(&self.waiters) > 0 {
            self.dispatch();
        }
    }

    /// Sets the limit; `true` if it grew. Room a grown limit makes goes to waiters first.
    pub(super) fn store_limit(&self, new_limit: usize) -> bool {
        let old = self.limit.swap(new_limit, Ordering::SeqCst);
        if new_limit != old {
            crate::trace::event!(debug, from = old, to = new_limit, "limit changed");
        }
        if new_limit > old && self.waiters.load(Ordering::SeqCst) > 0 {
            self.dispatch();
        }
        new_limit > old
    }
}

/// A sequentially consistent read of one side of the "raise mine, then read theirs"
/// pairs above (waiters / in-flight). Loom models `SeqCst` as acquire-release, under which
/// two plain loads could both read stale values and report a lost wake-up that real
/// hardware cannot produce; a read-modify-write always reads the latest value, so under
/// loom the reads are `fetch_add(0)` (the model then checks the same protocol, soundly).
#[inline]
fn seq_cst_read(atomic: &AtomicUsize) -> usize {
    #[cfg(loom)]
    return atomic.fetch_add(0, Ordering::SeqCst);
    #[cfg(not(loom))]
    atomic.load(Ordering::SeqCst)
}
