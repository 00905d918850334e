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
//!
//! The FIFO is sharded by thread: every admitted response with a body parks its permit and
//! takes it back microseconds later, and one lock that every core takes moved its cache line
//! between the cores twice a request (a hello behind `orders`' whole stack: 4 % of the
//! server's CPU, the layer's largest cost). A body parks on its thread's shard and takes its
//! permit back from that shard, on whatever thread it ends. The one reaper task looks at
//! every shard; whether it runs is an atomic that parking only reads.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use surgepool::limit::Permit;
use tokio::time::Instant;

use crate::shared::Shared;

/// The parked permits of one layer's streaming bodies, and its reaper's state.
#[derive(Debug)]
pub(crate) struct BodyPermits {
    timeout: Duration,
    shards: Box<[Shard]>,
    /// [`IDLE`], [`UNAVAILABLE`], or the id of the running reaper task.
    reaper: AtomicU64,
    /// The last reaper id handed out.
    ids: AtomicU64,
}

/// No reaper task: the next parked permit spawns one.
const IDLE: u64 = 0;
/// A reaper panicked: the runtime has no time driver. Bodies keep their permits until they
/// end, rather than spawn a task that panics for every response.
const UNAVAILABLE: u64 = u64::MAX;

/// At most this many shards (a power of two).
const MAX_SHARDS: usize = 64;

/// One shard's lock, on cache lines of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(Mutex<State>);

#[derive(Debug, Default)]
struct State {
    slots: Vec<Slot>,
    free: Vec<usize>,
    order: VecDeque<Entry>,
    live: usize,
    generation: u64,
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
    shard: usize,
    index: usize,
    generation: u64,
}

/// Leftover stale entries tolerated before a compaction (so a handful of live bodies does
/// not trigger one on every release).
const COMPACT_SLACK: usize = 64;

/// Numbers threads in the order they first park; a thread parks on its number's shard.
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

impl BodyPermits {
    pub(crate) fn new(timeout: Duration) -> BodyPermits {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        BodyPermits {
            timeout,
            shards: (0..threads.next_power_of_two().min(MAX_SHARDS))
                .map(|_| Shard::default())
                .collect(),
            reaper: AtomicU64::new(IDLE),
            ids: AtomicU64::new(IDLE),
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, State> {
        // Nothing under this lock runs user code; a poisoned lock still holds valid state.
        self.shards[shard]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Parks `permit` until its body ends or its time runs out. Gives the permit back when
    /// the deadline is beyond what the clock can represent (a `Duration::MAX` timeout: no
    /// bound), or when there is no reaper and no tokio runtime to run one on (the body keeps
    /// its permit until it ends, as without a timeout).
    pub(crate) fn park(&self, shared: &Arc<Shared>, permit: Permit) -> Result<Key, Permit> {
        let shard = THREAD.try_with(|t| *t).unwrap_or(0) & (self.shards.len() - 1);
        self.park_on(shard, shared, permit)
    }

    fn park_on(&self, shard: usize, shared: &Arc<Shared>, permit: Permit) -> Result<Key, Permit> {
        if self.reaper.load(Ordering::SeqCst) == UNAVAILABLE {
            return Err(permit);
        }
        let mut state = self.lock(shard);
        let Some(deadline) = Instant::now().checked_add(self.timeout) else {
            return Err(permit);
        };
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
        let key = Key {
            shard,
            index,
            generation,
        };
        // After the entry is in: a reaper that gives up its role looks at every shard once
        // more afterwards (`expire`), so either it sees this entry or this sees it gone.
        loop {
            match self.reaper.load(Ordering::SeqCst) {
                IDLE => {
                    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                        break;
                    };
                    let id = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
                    if self
                        .reaper
                        .compare_exchange(IDLE, id, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        let guard = ReaperGuard(Arc::downgrade(shared), id);
                        runtime.spawn(reap(guard));
                        return Ok(key);
                    }
                }
                UNAVAILABLE => break,
                _running => return Ok(key),
            }
        }
        // No reaper can run: the body keeps its permit (unless a reaper that was running
        // released it already: a zero timeout).
        let permit = self.lock(key.shard).take(key.index, key.generation);
        permit.map_or(Ok(key), Err)
    }

    /// The permit parked under `key`, unless the reaper released it already.
    pub(crate) fn take(&self, key: Key) -> Option<Permit> {
        let mut state = self.lock(key.shard);
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
        let mut next = None;
        for shard in 0..self.shards.len() {
            let mut state = self.lock(shard);
            while let Some(&entry) = state.order.front() {
                if !state.slots[entry.index].holds(entry.generation) {
                    state.order.pop_front(); // its body ended in time
                    continue;
                }
                if entry.deadline > now {
                    next = earliest(next, entry.deadline);
                    break;
                }
                state.order.pop_front();
                expired.extend(state.take(entry.index, entry.generation));
            }
        }
        if let Some(at) = next {
            return Next::At(at);
        }
        if !may_exit {
            return Next::Linger;
        }
        if self
            .reaper
            .compare_exchange(id, IDLE, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Next::Done;
        }
        // A permit parked since the look above saw this reaper running and spawned none.
        let parked = (0..self.shards.len())
            .filter_map(|shard| self.lock(shard).first_live())
            .min();
        match parked {
            Some(at)
                if self
                    .reaper
                    .compare_exchange(IDLE, id, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok() =>
            {
                Next::At(at)
            }
            // Nothing parked, or a new reaper took over.
            _ => Next::Done,
        }
    }

    /// The reaper `id` is gone without saying so: its runtime shut down (the next parked
    /// permit starts a new one, on whatever runtime it runs on), or it panicked.
    fn reaper_gone(&self, id: u64, panicked: bool) {
        let now = if panicked { UNAVAILABLE } else { IDLE };
        let _ = self
            .reaper
            .compare_exchange(id, now, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Bodies holding a parked permit now.
    #[cfg(test)]
    fn live(&self) -> usize {
        (0..self.shards.len()).map(|s| self.lock(s).live).sum()
    }

    /// Entries in the FIFOs, stale ones included.
    #[cfg(test)]
    fn entries(&self) -> usize {
        (0..self.shards.len())
            .map(|s| self.lock(s).order.len())
            .sum()
    }
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
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

    /// The deadline of the oldest permit still parked here.
    fn first_live(&self) -> Option<Instant> {
        self.order
            .iter()
            .find(|e| self.slots[e.index].holds(e.generation))
            .map(|e| e.deadline)
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
        assert!(shared.bodies.entries() <= COMPACT_SLACK + 1);
        // Two that never end are released when their time runs out.
        let _a = shared.bodies.park(&shared, limiter.try_acquire().unwrap());
        let _b = shared.bodies.park(&shared, limiter.try_acquire().unwrap());
        assert_eq!((shared.bodies.live(), limiter.in_flight()), (2, 2));
        tokio::time::sleep(Duration::from_secs(10)).await;
        tokio::task::yield_now().await;
        assert_eq!((shared.bodies.live(), limiter.in_flight()), (0, 0));
        assert_eq!(shared.stats().body_timeouts, 2);
        // The reaper lingers a second with nothing parked, then ends.
        assert!(running(&shared).is_some());
        tokio::time::sleep(MAX_LINGER).await;
        tokio::task::yield_now().await;
        assert_eq!(shared.bodies.reaper.load(Ordering::SeqCst), IDLE);
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
            if let Some(id) = running(&shared) {
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

    /// The running reaper's id.
    fn running(shared: &Shared) -> Option<u64> {
        let id = shared.bodies.reaper.load(Ordering::SeqCst);
        (id != IDLE && id != UNAVAILABLE).then_some(id)
    }

    /// Permits parked on every shard, from many threads, are all released at their deadline
    /// by the one reaper, and taken back from any thread.
    #[tokio::test(start_paused = true)]
    async fn permits_parked_on_every_shard_are_reaped() {
        let shared = layer_with_10s_bodies();
        let limiter = shared.limiter.clone();
        let mut keys = Vec::new();
        for shard in 0..shared.bodies.shards.len() {
            for _ in 0..3 {
                let permit = limiter.try_acquire().unwrap();
                keys.push(shared.bodies.park_on(shard, &shared, permit).unwrap());
            }
        }
        let handle = tokio::runtime::Handle::current();
        std::thread::scope(|s| {
            let parked: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let _runtime = handle.enter();
                        let permit = limiter.try_acquire().unwrap();
                        shared.bodies.park(&shared, permit).unwrap()
                    })
                })
                .collect();
            keys.extend(parked.into_iter().map(|t| t.join().unwrap()));
        });
        let parked = keys.len();
        // Every third ends in time, taken back here.
        let ended = keys.into_iter().step_by(3).map(|key| {
            shared.bodies.take(key).unwrap().success();
        });
        let left = parked - ended.count();
        assert_eq!((shared.bodies.live(), limiter.in_flight()), (left, left));
        tokio::time::sleep(Duration::from_secs(10)).await;
        tokio::task::yield_now().await;
        assert_eq!((shared.bodies.live(), limiter.in_flight()), (0, 0));
        assert_eq!(shared.stats().body_timeouts, left as u64);
    }

    /// Without a runtime there is no reaper: the body keeps its permit.
    #[test]
    fn without_a_runtime_the_permit_is_given_back() {
        let shared = layer_with_10s_bodies();
        let permit = shared.limiter.try_acquire().unwrap();
        let permit = shared.bodies.park(&shared, permit).unwrap_err();
        assert_eq!(shared.bodies.live(), 0);
        permit.success();
    }

    #[test]
    fn the_linger_is_the_timeout_at_most_a_second() {
        assert_eq!(linger(Duration::from_millis(10)), Duration::from_millis(10));
        assert_eq!(linger(Duration::MAX), MAX_LINGER);
    }
}
