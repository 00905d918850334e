//! The blocking pool's state machine: the async pool's rules (see `pool/inner/`) with
//! threads and condvars instead of tasks and wakers. One mutex guards every transition;
//! closures never run while it is held. As there, a closure is counted as ended under the
//! lock and published (its handle has its outcome, its user values are dropped) after it;
//! the pool is drained only once every ended closure is published.

mod admission;
mod dispatch;
mod shutdown;
mod workers;

use std::collections::VecDeque;
use std::time::Duration;

use super::task::BlockingJob;
use super::worker::ThreadParker;
use crate::accounting::{Accounting, Published};
use crate::clock::{Clock, Stamp};
use crate::error::ShedReason;
use crate::limit::Limiter;
use crate::pool::PanicHook;
use crate::queue::JobQueue;
use crate::stats::Snapshot;
use crate::sync::{lock, Arc, Condvar, Mutex, MutexGuard, Padded};

pub(crate) struct Running {
    pub(crate) job: BlockingJob,
    pub(crate) accepted: Stamp,
    pub(crate) started: Stamp,
}

pub(crate) struct Settings {
    pub(crate) clock: Clock,
    pub(crate) min_workers: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) on_panic: Option<PanicHook>,
    pub(crate) thread_name: String,
    pub(crate) stack_size: Option<usize>,
    /// The pool's name, for `tracing` events.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) name: std::sync::Arc<str>,
}

pub(crate) struct Inner {
    /// On its own cache lines (see the async pool's `Inner`).
    state: Padded<Mutex<State>>,
    /// Signalled when room appears (for `submit_timeout`) and when the pool drains.
    changed: Condvar,
    pub(crate) limiter: Limiter,
    pub(crate) settings: Settings,
    /// Closures whose end was published. On its own cache lines: every closure writes it.
    published: Padded<Published>,
}

struct State {
    queue: JobQueue<BlockingJob>,
    acct: Accounting,
    running: usize,
    workers: usize,
    idle: Vec<Arc<ThreadParker>>,
    closed: bool,
    waiters: VecDeque<u64>,
    next_waiter: u64,
    next_thread: u64,
    /// Threads blocked on `changed` (submitters and shutdown callers). Notifying a condvar
    /// is a syscall even with nobody waiting, so it is skipped when this is 0.
    watchers: usize,
}

pub(crate) enum Refusal {
    Full,
    Closed,
    Timeout,
}

pub(crate) enum AfterRun {
    Run(Running),
    Idle,
    Exit,
}

pub(crate) enum IdleDecision {
    Retire,
    Stay,
    TaskArrived,
}

enum Dispatch {
    Woken,
    Spawn(Arc<ThreadParker>, Running, u64),
}

/// Work collected under the lock and done after it: closures to end as shed, threads to
/// start. Empty vectors do not allocate.
#[derive(Default)]
struct Later {
    shed: Vec<(BlockingJob, ShedReason)>,
    spawns: Vec<(Arc<ThreadParker>, Running, u64)>,
}

impl Inner {
    pub(crate) fn new(
        limiter: Limiter,
        settings: Settings,
        queue: JobQueue<BlockingJob>,
    ) -> Arc<Inner> {
        let inner = Arc::new(Inner {
            state: Padded(Mutex::new(State {
                queue,
                acct: Accounting::new(),
                running: 0,
                workers: 0,
                idle: Vec::new(),
                closed: false,
                waiters: VecDeque::new(),
                next_waiter: 0,
                next_thread: 0,
                watchers: 0,
            })),
            changed: Condvar::new(),
            limiter,
            settings,
            published: Padded(Published::new()),
        });
        let parkers: Vec<(Arc<ThreadParker>, u64)> = {
            let mut st = inner.state();
            (0..inner.settings.min_workers)
                .map(|_| {
                    let parker = Arc::new(ThreadParker::new());
                    st.workers += 1;
                    st.idle.push(parker.clone());
                    let n = st.next_thread;
                    st.next_thread += 1;
                    (parker, n)
                })
                .collect()
        };
        for (parker, n) in parkers {
            inner.spawn_thread(parker, None, n);
        }
        inner
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Blocks on `changed`, counted as a watcher, at most `timeout`.
    fn watch<'a>(
        &self,
        mut st: MutexGuard<'a, State>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, State> {
        st.watchers += 1;
        let mut st = match timeout {
            None => match self.changed.wait(st) {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            },
            Some(t) => match self.changed.wait_timeout(st, t) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            },
        };
        st.watchers -= 1;
        st
    }

    fn notify_watchers(&self, st: &State) {
        if st.watchers > 0 {
            self.changed.notify_all();
        }
    }

    /// The counts under the lock; summarising happens after it is released.
    fn take(&self) -> crate::accounting::Unsummarised {
        let st = self.state();
        st.acct
            .snapshot(st.queue.len(), st.running, st.workers, self.limiter.limit())
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        self.take().summarise()
    }

    /// A snapshot and the latency counts behind it, read under one lock (for exporters).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn snapshot_with_latencies(&self) -> (Snapshot, crate::stats::Latencies) {
        self.take().summarise_keeping()
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingPool")
            .field("state", &self.snapshot())
            .finish()
    }
}
