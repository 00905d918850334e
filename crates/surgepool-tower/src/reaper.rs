//! Bounds how long a response body may hold its request's permit (`body_timeout`).
//!
//! A body that is not over when the inner service answers keeps its request's permit (see
//! [`AdmissionBody`](crate::AdmissionBody)). A client that never reads it would hold that
//! permit for as long as its connection lives: hyper stops polling a body whose bytes it
//! cannot write, so a timer inside the body would never be polled. Two such clients wedged a
//! server whose limit was 2: every other request got 503, and the adaptive limit could not
//! move, since no sample came. So the permits of such bodies are parked here, and one reaper
//! task per layer releases (as drops) those whose time ran out, whether anyone polls the body
//! or not.
//!
//! Every body of one layer gets the same timeout and the clock is read under the lock, so
//! deadlines are registered in order: a FIFO of deadlines is the whole timer queue. A body that
//! ends in time takes its permit back out of its slot and leaves a stale entry in the FIFO,
//! told apart by its slot's generation; the FIFO is compacted when stale entries outnumber
//! live ones, so memory stays bounded by the bodies in flight (at most the limit), not by the
//! request rate times the timeout.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use surgepool::limit::Permit;
use tokio::time::Instant;

use crate::shared::Shared;

/// The parked permits of one layer's streaming bodies, and its reaper's state.
#[derive(Debug)]
pub(crate) struct BodyPermits {
    timeout: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    slots: Vec<Slot>,
    free: Vec<usize>,
    order: VecDeque<Entry>,
    live: usize,
    generation: u64,
    reaper: Reaper,
}

#[derive(Debug, Default)]
struct Slot {
    generation: u64,
    permit: Option<Permit>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    deadline: Instant,
    index: usize,
    generation: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Reaper {
    /// No reaper task: the next parked permit spawns one.
    #[default]
    Idle,
    /// The reaper task with this id is running (or sleeping).
    Running(u64),
    /// A reaper panicked: the runtime has no time driver. Bodies keep their permits until
    /// they end, rather than spawn a task that panics for every response.
    Unavailable,
}

/// What the reaper does after an [`BodyPermits::expire`].
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Sleep until this deadline, the oldest parked permit's.
    At(Instant),
    /// Nothing is parked: sleep for [`linger`], then look again.
    Linger,
    /// Nothing was parked through a whole linger: the task ends.
    Done,
}

/// How long a reaper with nothing to do waits before it ends: a layer's timeout, at most
/// [`MAX_LINGER`].
///
/// A reaper that ended as soon as nothing was parked was spawned again by the next response:
/// under load, one task per two requests (callgrind, `orders` hello), since a small body is
/// parked and taken back within microseconds. Lingering is safe for deadlines: a permit
/// parked while the reaper sleeps has a deadline a whole timeout after its parking, so not
/// before the reaper looks again unless the linger is shorter, and then the reaper sees it.
fn linger(timeout: Duration) -> Duration {
    timeout.min(MAX_LINGER)
}

const MAX_LINGER: Duration = Duration::from_secs(1);

/// Where a parked permit is; redeemed with [`BodyPermits::take`].
#[derive(Debug)]
pub(crate) struct Key {
    index: usize,
    generation: u64,
}

/// Leftover stale entries tolerated before a compaction (so a handful of live bodies does
/// not trigger one on every release).
const COMPACT_SLACK: usize = 64;

impl BodyPermits {
    pub(crate) fn new(timeout: Duration) -> BodyPermits {
        BodyPermits {
            timeout,
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under this lock runs user code; a poisoned lock still holds valid state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Parks `permit` until its body ends or its time runs out. Gives the permit back when
    /// the deadline is beyond what the clock can represent (a `Duration::MAX` timeout: no
    /// bound), or when there is no tokio runtime to run the reaper on (the body keeps its
    /// permit until it ends, as without a timeout).
    pub(crate) fn park(&self, shared: &Arc<Shared>, permit: Permit) -> Result<Key, Permit> {
        let mut state = self.lock();
        let Some(deadline) = Instant::now().checked_add(self.timeout) else {
            return Err(permit);
        };
        let mut spawn = None;
        match state.reaper {
            Reaper::Running(_) => {}
            Reaper::Unavailable => return Err(permit),
            Reaper::Idle => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return Err(permit);
                };
                state.generation += 1;
                state.reaper = Reaper::Running(state.generation);
                spawn = Some((runtime, state.generation));
            }
        }
        state.generation += 1;
        let generation = state.generation;
        let index = match state.free.pop() {
            Some(index) => index,
            None => {
                state.slots.push(Slot::default());
                state.slots.len() - 1
            }
        };
        state.slots[index] = Slot {
            generation,
            permit: Some(permit),
        };
        state.live += 1;
        state.order.push_back(Entry {
            deadline,
            index,
            generation,
        });
        drop(state);
        if let Some((runtime, id)) = spawn {
            // Spawned outside the lock: a runtime that is shutting down drops the task at
            // once, and its guard then takes the lock to mark the reaper gone.
            let guard = ReaperGuard(Arc::downgrade(shared), id);
            runtime.spawn(reap(guard));
        }
        Ok(Key { index, generation })
    }

    /// The permit parked under `key`, unless the reaper released it already.
    pub(crate) fn take(&self, key: Key) -> Option<Permit> {
        let mut state = self.lock();
        let permit = state.take(key.index, key.generation);
        if state.order.len() > 2 * state.live + COMPACT_SLACK {
            let State { order, slots, .. } = &mut *state;
            order.retain(|e| slots[e.index].holds(e.generation));
        }
        permit
    }

    /// Takes out every permit whose deadline is `now` or earlier; says when the reaper `id`
    /// should look again. When nothing is parked it lingers once (`may_exit` false), and is
    /// done only when nothing was parked through its linger either (then the next parked
    /// permit spawns a new one).
    fn expire(&self, now: Instant, id: u64, may_exit: bool, expired: &mut Vec<Permit>) -> Next {
        let mut state = self.lock();
        while let Some(&entry) = state.order.front() {
            if !state.slots[entry.index].holds(entry.generation) {
                state.order.pop_front(); // its body ended in time
                continue;
            }
            if entry.deadline > now {
                return Next::At(entry.deadline);
            }
            state.order.pop_front();
            expired.extend(state.take(entry.index, entry.generation));
        }
        if !may_exit {
            return Next::Linger;
        }
        if state.reaper == Reaper::Running(id) {
            state.reaper = Reaper::Idle;
        }
        Next::Done
    }

    /// The reaper `id` is gone without saying so: its runtime shut down (the next parked
    /// permit starts a new one, on whatever runtime it runs on), or it panicked.
    fn reaper_gone(&self, id: u64, panicked: bool) {
        let mut state = self.lock();
        if state.reaper == Reaper::Running(id) {
            state.reaper = if panicked {
                Reaper::Unavailable
            } else {
                Reaper::Idle
            };
        }
    }

    /// Bodies holding a parked permit now.
    #[cfg(test)]
    fn live(&self) -> usize {
        self.lock().live
    }
}

impl State {
    fn take(&mut self, index: usize, generation: u64) -> Option<Permit> {
        let slot = &mut self.slots[index];
        if !slot.holds(generation) {
            return None;
        }
        let permit = slot.permit.take();
        self.live -= 1;
        self.free.push(index);
        permit
    }
}

impl Slot {
    fn holds(&self, generation: u64) -> bool {
        self.generation == generation && self.permit.is_some()
    }
}

/// The reaper task: sleeps until the oldest parked permit's deadline, releases what expired
/// as drops, and exits when nothing was parked for a [`linger`] or the layer is gone. It
/// holds the layer only weakly, so a dropped layer is not kept alive for a whole timeout.
async fn reap(guard: ReaperGuard) {
    let (shared, id) = (guard.0.clone(), guard.1);
    let mut expired = Vec::new();
    let mut lingered = false;
    loop {
        let Some(layer) = shared.upgrade() else {
            return;
        };
        let next = layer
            .bodies
            .expire(Instant::now(), id, lingered, &mut expired);
        for permit in expired.drain(..) {
            layer.count_body_timeout();
            // A limit algorithm that panics must not take the reaper down with it: the
            // layer's other bodies would then hold their permits unbounded. The permit is
            // released either way (a permit dropped in a panic counts as dropped).
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| permit.dropped()));
        }
        let pause = linger(layer.bodies.timeout());
        drop(layer);
        match next {
            Next::At(deadline) => {
                lingered = false;
                tokio::time::sleep_until(deadline).await;
            }
            Next::Linger => {
                lingered = true;
                tokio::time::sleep(pause).await;
            }
            Next::Done => return,
        }
    }
}

/// Marks the reaper gone when its task is dropped unfinished (runtime shutdown) or panics.
struct ReaperGuard(Weak<Shared>, u64);

impl Drop for ReaperGuard {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            shared.bodies.reaper_gone(self.1, std::thread::panicking());
        }
    }
}

#[cfg(test)]
mod tests {
    use surgepool::limit::{Limit, Limiter};

    use super::*;

    /// A layer's state with room for 1,000 permits and a 10 s body timeout.
    fn layer_with_10s_bodies() -> Arc<Shared> {
        Arc::new(crate::shared::tests::shared(
            Limiter::new(Limit::fixed(1_000)).unwrap(),
            Duration::from_secs(10),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn stale_entries_are_compacted_and_live_ones_reaped() {
        let shared = layer_with_10s_bodies();
        let limiter = shared.limiter.clone();
        // Many bodies that end in time: the FIFO stays small.
        for _ in 0..10_000 {
            let key = shared.bodies.park(&shared, limiter.try_acquire().unwrap());
            let permit = shared.bodies.take(key.unwrap()).unwrap();
            permit.success();
        }
        assert!(shared.bodies.lock().order.len() <= COMPACT_SLACK + 1);
        // Two that never end are released when their time runs out.
        let _a = shared.bodies.park(&shared, limiter.try_acquire().unwrap());
        let _b = shared.bodies.park(&shared, limiter.try_acquire().unwrap());
        assert_eq!((shared.bodies.live(), limiter.in_flight()), (2, 2));
        tokio::time::sleep(Duration::from_secs(10)).await;
        tokio::task::yield_now().await;
        assert_eq!((shared.bodies.live(), limiter.in_flight()), (0, 0));
        assert_eq!(shared.stats().body_timeouts, 2);
        // The reaper lingers a second with nothing parked, then ends.
        assert!(matches!(shared.bodies.lock().reaper, Reaper::Running(_)));
        tokio::time::sleep(MAX_LINGER).await;
        tokio::task::yield_now().await;
        assert_eq!(shared.bodies.lock().reaper, Reaper::Idle);
    }

    /// Bodies that end at once, one after another, share one reaper task: it lingers rather
    /// than end and be spawned again by the next response.
    #[tokio::test(start_paused = true)]
    async fn one_reaper_serves_a_stream_of_short_bodies() {
        let shared = layer_with_10s_bodies();
        let limiter = shared.limiter.clone();
        let mut ids = std::collections::HashSet::new();
        for _ in 0..100 {
            let key = shared.bodies.park(&shared, limiter.try_acquire().unwrap());
            if let Reaper::Running(id) = shared.bodies.lock().reaper {
                ids.insert(id);
            }
            // The reaper runs between two responses and finds nothing parked.
            let permit = shared.bodies.take(key.unwrap()).unwrap();
            permit.success();
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(ids.len(), 1, "reapers spawned: {ids:?}");
        // A permit parked during the linger is still released at its deadline.
        let _stuck = shared.bodies.park(&shared, limiter.try_acquire().unwrap());
        tokio::time::sleep(Duration::from_secs(10)).await;
        tokio::task::yield_now().await;
        assert_eq!(limiter.in_flight(), 0);
        assert_eq!(shared.stats().body_timeouts, 1);
    }

    #[test]
    fn the_linger_is_the_timeout_at_most_a_second() {
        assert_eq!(linger(Duration::from_millis(10)), Duration::from_millis(10));
        assert_eq!(linger(Duration::MAX), MAX_LINGER);
    }
}
