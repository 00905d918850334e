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

mod shutdown;
mod workers;

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::Waker;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::clock::{Clock, Stamp};

use super::job::Job;
use super::task::SharedTask;
use super::worker::Parker;
use super::PanicHook;
use crate::accounting::{Accounting, Outcome, Published};
use crate::error::{ShedReason, TaskError};
use crate::limit::{Limiter, Outcome as LimitOutcome};
use crate::queue::{Entry, JobQueue};
use crate::stats::Snapshot;
use crate::sync::{lock, Arc, AtomicBool, Mutex, MutexGuard, Ordering, Padded};

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

    /// Gives a task that holds a slot to an idle worker, or to a new one.
    fn hand_to_worker(&self, st: &mut State, running: Running) -> Dispatch {
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
    fn start_queued(
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

    fn wake_next_waiter(&self, st: &mut State, deferred: &mut Deferred) {
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

    /// Called by a worker when its task ended; decides what the worker does next.
    pub(crate) fn finish(
        self: &Arc<Self>,
        parker: &Arc<Parker>,
        done: &Running,
        outcome: Outcome,
    ) -> AfterRun {
        let at = Instant::now();
        let now = self.settings.clock.at(at);
        let run_time = now.nanos_since(done.started);
        let queue_wait = done.started.nanos_since(done.accepted);
        let limit_outcome = match outcome {
            Outcome::Completed => LimitOutcome::Success(Duration::from_nanos(run_time)),
            Outcome::Panicked | Outcome::Cancelled | Outcome::Shed => LimitOutcome::Ignored,
        };
        let mut deferred = Deferred::default();
        let in_flight;
        let after = {
            let mut st = self.state();
            // The caller publishes the task once this returns (`publish_ended`).
            st.running -= 1;
            st.bytes_in_flight -= done.weight;
            st.acct.finish(outcome, Some((queue_wait, run_time)));
            if outcome == Outcome::Cancelled && self.cancel_running.load(Ordering::Acquire) {
                st.acct.cancelled_at_deadline += 1;
            }
            // With tasks waiting, the slot goes straight to the next one (when the limit
            // still allows it) instead of being released and taken again. The outcome goes
            // to the limiter after the lock is released (an adaptive algorithm's update is
            // the longest step here), with the in-flight count the task saw.
            let held;
            (held, in_flight) = self.limiter.end_job_raw(!st.queue.is_empty());
            let mut next = None;
            self.start_queued(&mut st, now, &mut deferred, Some(&mut next), held);
            match next {
                Some(running) => AfterRun::Run(running),
                None => self.idle_or_exit(&mut st, parker),
            }
        };
        self.carry_out(deferred);
        // The task is counted and its slot settled: a panicking limit algorithm must not
        // undo that (the worker would count the task again), so it is caught, and the limit
        // just stays where it was.
        let grew = catch_unwind(AssertUnwindSafe(|| {
            self.limiter.sample_raw(limit_outcome, at, in_flight)
        }));
        if grew.unwrap_or(false) {
            // The limit grew: queued tasks may start now rather than at the next finish.
            self.start_more();
        }
        after
    }

    /// Starts queued tasks on free slots (after the limit grew outside the lock).
    fn start_more(self: &Arc<Self>) {
        let now = self.settings.clock.now();
        let mut deferred = Deferred::default();
        {
            let mut st = self.state();
            self.start_queued(&mut st, now, &mut deferred, None, false);
        }
        self.carry_out(deferred);
    }

    pub(crate) fn abort(self: &Arc<Self>, task: SharedTask) {
        let removed = {
            let mut st = self.state();
            let removed = st.queue.remove(|j| j.is(&task));
            if let Some(entry) = &removed {
                st.bytes_in_flight -= entry.weight;
                st.acct.finish(Outcome::Cancelled, None);
                let mut deferred = Deferred::default();
                self.wake_next_waiter(&mut st, &mut deferred);
                self.notify_if_drained(&st);
                drop(st);
                self.carry_out(deferred);
            }
            removed
        };
        match removed {
            Some(entry) => {
                entry.job.finish_unrun(TaskError::cancelled());
                self.publish_ended(1);
            }
            None => {
                // Running (or about to run): its worker drops it at the next poll.
                task.set_aborted();
                self.wake_workers();
            }
        }
    }

    /// Wakes every worker (they re-check abort flags; idle ones just park again).
    fn wake_workers(&self) {
        let parkers: Vec<Arc<Parker>> = self.state().all.clone();
        for parker in parkers {
            parker.wake_task();
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

    fn carry_out(self: &Arc<Self>, deferred: Deferred) {
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
