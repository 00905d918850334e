//! The async pool's state machine. Every transition happens under one mutex, so admission,
//! handoff to workers, shedding, accounting and shutdown cannot race each other; user code
//! (futures, their destructors, wakers) never runs while it is held.
//!
//! Invariants (checked by the stress and loom tests):
//! * `running` = tasks holding a slot of the limiter (handed to a worker or being run);
//!   `running <= limit` at the moment each slot is taken.
//! * a free slot and a non-empty queue never coexist after a transition: whoever frees a
//!   slot (a finishing worker) takes the next queued task under the same lock.
//! * `workers` = workers alive; idle workers are in `idle` and hold no task. A worker is
//!   counted while its parker is in `all`, so removing it twice cannot count it twice.
//! * `published` <= ended tasks: a task is counted under the lock, then its handle gets its
//!   result (and its user values are dropped) without it; only then is it published. The
//!   pool is drained when every ended task is also published, so `shutdown()` never returns
//!   while a handle still waits for its result.

mod admission;
mod dispatch;
mod finish;
mod shutdown;
mod workers;

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::Waker;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::clock::{Clock, Stamp};

use super::job::Job;
use super::worker::Parker;
use super::PanicHook;
use crate::accounting::{Accounting, Published};
use crate::error::ShedReason;
use crate::limit::Limiter;
use crate::queue::JobQueue;
use crate::stats::Snapshot;
use crate::sync::{lock, Arc, AtomicBool, Mutex, MutexGuard, Padded};

pub(crate) use workers::IdleDecision;

/// A task that holds a slot and is on its way to, or on, a worker.
pub(crate) struct Running {
    pub(crate) job: Job,
    pub(crate) accepted: Stamp,
    pub(crate) started: Stamp,
    pub(crate) weight: u64,
}

impl Running {
    /// Pin projection to the job.
    pub(crate) fn job(self: Pin<&mut Self>) -> Pin<&mut Job> {
        // SAFETY: `job` is structurally pinned: nothing moves it out of a pinned `Running`
        // (the worker only reads the other fields, plain data, and calls `job.publish(&self)`),
        // `Running` has no `Drop` impl that could move it, and it does not implement `Unpin`
        // by hand. The worker pins a `Running` (`pin!` in `worker::run`) before the first
        // poll and drops it there. Caught by `tests/pool_pinning.rs` (a `!Unpin` future
        // counts polls at a new address) and, under ASan, by its self-borrowing future.
        unsafe { self.map_unchecked_mut(|running| &mut running.job) }
    }
}

/// Per-submit options.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JobOptions {
    pub(crate) deadline: Option<Instant>,
    pub(crate) weight: u64,
}

pub(crate) struct Settings {
    pub(crate) clock: Clock,
    pub(crate) min_workers: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) memory_budget: Option<u64>,
    pub(crate) on_panic: Option<PanicHook>,
    /// The pool's name, for `tracing` events.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) name: std::sync::Arc<str>,
}

pub(crate) struct Inner {
    /// On its own cache lines: the submitter and every worker take it, and the fields
    /// below are read on every task without it.
    state: Padded<Mutex<State>>,
    pub(crate) limiter: Limiter,
    pub(crate) runtime: Handle,
    pub(crate) settings: Settings,
    /// Set at a shutdown deadline: every running task is dropped at its next poll.
    pub(crate) cancel_running: AtomicBool,
    /// Tasks whose end was published (see the invariants). On its own cache lines: every
    /// task's end writes it, and `cancel_running` beside the others is read at every poll.
    published: Padded<Published>,
    drained: Notify,
}

struct State {
    queue: JobQueue<Job>,
    acct: Accounting,
    running: usize,
    workers: usize,
    idle: Vec<Arc<Parker>>,
    /// Every live worker, to wake them all at a shutdown deadline.
    all: Vec<Arc<Parker>>,
    closed: bool,
    bytes_in_flight: u64,
    /// Callers parked in `submit`, FIFO.
    waiters: VecDeque<(u64, Waker)>,
    next_waiter: u64,
}

/// What the caller of an admission must do once the lock is released.
pub(crate) enum Dispatch {
    None,
    Wake(Waker),
    Spawn(Arc<Parker>, Running),
}

/// Why an admission failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Full,
    Closed,
    /// Full, and the caller (a waiting `submit`) is in the line under this id.
    InLine(u64),
}

/// A waiting `submit`'s place in the line of callers parked for room: its id once it has
/// one, and the waker to wake when room comes.
pub(crate) struct Line<'a> {
    pub(crate) id: Option<u64>,
    pub(crate) waker: &'a Waker,
}

/// What a worker does after finishing a task.
pub(crate) enum AfterRun {
    Run(Running),
    Idle,
    Exit,
}

/// Work to do after the lock is released: wake or spawn workers, end shed tasks, wake a
/// submitter. Collected under the lock, carried out without it. The common case (one
/// dispatch, at most one submitter to wake) lives inline; the rare rest (several
/// dispatches, shed tasks, a close waking every submitter) is boxed, so the hot path
/// neither allocates nor pays to drop three empty vectors.
#[derive(Default)]
pub(crate) struct Deferred {
    dispatch: Option<Dispatch>,
    wake: Option<Waker>,
    rest: Option<Box<DeferredRest>>,
}

#[derive(Default)]
struct DeferredRest {
    dispatch: Vec<Dispatch>,
    shed: Vec<(Job, ShedReason)>,
    wake: Vec<Waker>,
}

impl Deferred {
    fn dispatch(&mut self, d: Dispatch) {
        if self.dispatch.is_none() {
            self.dispatch = Some(d);
        } else {
            self.rest().dispatch.push(d);
        }
    }

    fn rest(&mut self) -> &mut DeferredRest {
        self.rest.get_or_insert_with(Box::default)
    }
}

impl Inner {
    pub(crate) fn new(
        limiter: Limiter,
        runtime: Handle,
        settings: Settings,
        queue: JobQueue<Job>,
    ) -> Arc<Inner> {
        let inner = Arc::new(Inner {
            state: Padded(Mutex::new(State {
                queue,
                acct: Accounting::new(),
                running: 0,
                workers: 0,
                idle: Vec::new(),
                all: Vec::new(),
                closed: false,
                bytes_in_flight: 0,
                waiters: VecDeque::new(),
                next_waiter: 0,
            })),
            limiter,
            runtime,
            settings,
            cancel_running: AtomicBool::new(false),
            published: Padded(Published::new()),
            drained: Notify::new(),
        });
        // Start the minimum of workers now, idle, so no race can find fewer.
        let parkers: Vec<Arc<Parker>> = {
            let mut st = lock(&inner.state);
            (0..inner.settings.min_workers)
                .map(|_| {
                    let parker = Arc::new(Parker::new());
                    st.workers += 1;
                    st.idle.push(parker.clone());
                    st.all.push(parker.clone());
                    parker
                })
                .collect()
        };
        for parker in parkers {
            inner.spawn_worker(parker, None);
        }
        inner
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
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
        f.debug_struct("Pool")
            .field("state", &self.snapshot())
            .finish()
    }
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("accepted", &self.accepted)
            .field("started", &self.started)
            .field("weight", &self.weight)
            .finish_non_exhaustive()
    }
}
