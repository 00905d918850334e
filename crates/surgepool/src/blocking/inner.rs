//! The blocking pool's state machine: the async pool's rules (see `pool/inner.rs`) with
//! threads and condvars instead of tasks and wakers. One mutex guards every transition;
//! closures never run while it is held. As there, a closure is counted as ended under the
//! lock and published (its handle has its outcome, its user values are dropped) after it;
//! the pool is drained only once every ended closure is published.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use tokio::time::Instant;

use super::task::BlockingJob;
use super::worker::{self, ThreadParker};
use crate::accounting::{Accounting, Outcome, Published};
use crate::clock::{Clock, Stamp};
use crate::error::{ShedReason, TaskError};
use crate::limit::{Limiter, Outcome as LimitOutcome};
use crate::pool::PanicHook;
use crate::queue::{Entry, JobQueue};
use crate::stats::{ShutdownReport, Snapshot};
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

    fn spawn_thread(self: &Arc<Self>, parker: Arc<ThreadParker>, first: Option<Running>, n: u64) {
        let inner = self.clone();
        let thread_parker = parker.clone();
        let mut builder =
            crate::sync::thread::Builder::new().name(format!("{}-{n}", self.settings.thread_name));
        if let Some(size) = self.settings.stack_size {
            builder = builder.stack_size(size);
        }
        // The first job travels in the parker, so a failed spawn can take it back.
        if let Some(running) = first {
            parker.give(running);
        }
        if builder
            .spawn(move || worker::run(inner, thread_parker))
            .is_err()
        {
            self.spawn_failed(&parker);
        }
    }

    /// The OS refused a thread: the task it was for ends as cancelled, nothing is lost.
    fn spawn_failed(self: &Arc<Self>, parker: &Arc<ThreadParker>) {
        let job = parker.take();
        {
            let mut st = self.state();
            st.workers -= 1;
            st.idle.retain(|p| !Arc::ptr_eq(p, parker));
            if job.is_some() {
                st.running -= 1;
                st.acct.finish(Outcome::Cancelled, None);
                self.limiter
                    .release_raw(LimitOutcome::Ignored, Instant::now());
            }
        }
        if let Some(running) = job {
            running.job.finish_unrun(TaskError::cancelled());
            self.publish_ended(1);
        }
        // Rare: wake every watcher unconditionally.
        self.changed.notify_all();
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
                return Err((f, Refusal::Closed));
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
                return Err((f, Refusal::Full));
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
                return Err((f, Refusal::Timeout));
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
        let now = self.settings.clock.at(at);
        let (job, admitted) = make(f);
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
        Ok(admitted)
    }

    fn hand_to_worker(&self, st: &mut State, running: Running) -> Dispatch {
        if let Some(parker) = st.idle.pop() {
            parker.give(running);
            Dispatch::Woken
        } else {
            let parker = Arc::new(ThreadParker::new());
            st.workers += 1;
            let n = st.next_thread;
            st.next_thread += 1;
            Dispatch::Spawn(parker, running, n)
        }
    }

    /// Called by a worker thread when its closure returned.
    pub(crate) fn finish(
        self: &Arc<Self>,
        parker: &Arc<ThreadParker>,
        done: &Running,
        outcome: Outcome,
    ) -> AfterRun {
        let at = Instant::now();
        let now = self.settings.clock.at(at);
        let run_time = now.nanos_since(done.started);
        let queue_wait = done.started.nanos_since(done.accepted);
        let limit_outcome = match outcome {
            Outcome::Completed => LimitOutcome::Success(Duration::from_nanos(run_time)),
            _ => LimitOutcome::Ignored,
        };
        let mut later = Later::default();
        let in_flight;
        let after = {
            let mut st = self.state();
            st.running -= 1;
            st.acct.finish(outcome, Some((queue_wait, run_time)));
            // With closures waiting, the slot goes straight to the next one, and the outcome
            // goes to the limiter after the lock (as in the async pool's `finish`).
            let held;
            (held, in_flight) = self.limiter.end_job_raw(!st.queue.is_empty());
            let mut mine = None;
            self.start_queued(&mut st, now, held, Some(&mut mine), &mut later);
            match mine {
                Some(running) => AfterRun::Run(running),
                None => {
                    let keep = self.settings.min_workers.max(self.limiter.limit());
                    if st.closed || st.workers > keep {
                        st.workers -= 1;
                        AfterRun::Exit
                    } else {
                        st.idle.push(parker.clone());
                        AfterRun::Idle
                    }
                }
            }
        };
        self.carry_out(later);
        // The closure is counted and its slot settled: a panicking limit algorithm must not
        // undo that (the thread would die holding its next closure), so it is caught, and
        // the limit just stays where it was.
        let grew = catch_unwind(AssertUnwindSafe(|| {
            self.limiter.sample_raw(limit_outcome, at, in_flight)
        }));
        if grew.unwrap_or(false) {
            // The limit grew: queued closures may start now rather than at the next finish.
            let now = self.settings.clock.now();
            let mut later = Later::default();
            {
                let mut st = self.state();
                self.start_queued(&mut st, now, false, None, &mut later);
            }
            self.carry_out(later);
        }
        after
    }

    /// Starts queued closures while slots are free: the first into `mine` (a thread that
    /// just finished) if given, the rest on idle or new threads. `held`: the caller passes on
    /// a slot it holds (given back here if no closure takes it). Wakes whoever waits for room
    /// or for the drain.
    fn start_queued(
        &self,
        st: &mut State,
        now: Stamp,
        mut held: bool,
        mut mine: Option<&mut Option<Running>>,
        later: &mut Later,
    ) {
        loop {
            let State { queue, acct, .. } = &mut *st;
            let on_shed = |entry: Entry<BlockingJob>, reason| later.shed.push((entry.job, reason));
            let Some(entry) = queue.next_runnable(now, &self.limiter, &mut held, acct, on_shed)
            else {
                break;
            };
            st.running += 1;
            let running = Running {
                job: entry.job,
                accepted: entry.enqueued,
                started: now,
            };
            match mine.as_deref_mut() {
                Some(slot @ None) => *slot = Some(running),
                _ => {
                    if let Dispatch::Spawn(p, r, n) = self.hand_to_worker(st, running) {
                        later.spawns.push((p, r, n));
                    }
                }
            }
        }
        if held {
            self.limiter.free_raw();
        }
        // Room, or the end of the drain: tell whoever waits.
        self.notify_watchers(st);
    }

    /// The thread's own code panicked (not a closure: their panics, and those of their
    /// destructors, are caught where they happen). The thread ends, counted out; the closure
    /// it held next goes to another thread, and one it was still running ends as panicked.
    /// Called from the thread's guard, while it unwinds, never under the pool's lock.
    pub(crate) fn thread_panicked(
        self: &Arc<Self>,
        parker: &Arc<ThreadParker>,
        next: Option<Running>,
        current: Option<Running>,
    ) {
        let mut later = Later::default();
        let ended = {
            let mut st = self.state();
            if let Some(i) = st.idle.iter().position(|p| Arc::ptr_eq(p, parker)) {
                st.idle.swap_remove(i);
            }
            // `close` counts idle threads out as it tells them to end: never count twice.
            if !parker.told_to_exit() {
                st.workers -= 1;
            }
            // Each still holds its slot and is counted as running: only its thread changes.
            for running in next.into_iter().chain(parker.take()) {
                if let Dispatch::Spawn(p, r, n) = self.hand_to_worker(&mut st, running) {
                    later.spawns.push((p, r, n));
                }
            }
            let ended = current.inspect(|_| {
                st.running -= 1;
                st.acct.finish(Outcome::Panicked, None);
            });
            let now = self.settings.clock.now();
            // The freed slot may start a queued closure; this also wakes a drain's waiter.
            self.start_queued(&mut st, now, ended.is_some(), None, &mut later);
            ended
        };
        if let Some(running) = ended {
            running.job.finish_unrun(TaskError::panic_without_payload());
            self.publish_ended(1);
        }
        self.carry_out(later);
    }

    /// `n` closures, counted as ended under the lock earlier, are now published: wake a
    /// shutdown waiting for the drain. The lock is taken only while a shutdown is under way.
    pub(crate) fn publish_ended(&self, n: u64) {
        if n == 0 {
            return;
        }
        if self.published.add(n) {
            let st = self.state();
            self.notify_watchers(&st);
        }
    }

    /// Every accepted closure ended and was published (the caller closed the pool).
    fn drained(&self, st: &State) -> bool {
        st.running == 0 && st.queue.is_empty() && self.published.count() == st.acct.ended()
    }

    /// Ends shed closures and starts threads, once the lock is released.
    fn carry_out(self: &Arc<Self>, later: Later) {
        let shed = later.shed.len() as u64;
        for (job, reason) in later.shed {
            crate::trace::event!(debug, pool = %self.settings.name, reason = ?reason, "task shed");
            job.finish_unrun(TaskError::shed(reason));
        }
        self.publish_ended(shed);
        for (p, r, n) in later.spawns {
            self.spawn_thread(p, Some(r), n);
        }
    }

    pub(crate) fn idle_timeout(&self, parker: &Arc<ThreadParker>) -> IdleDecision {
        let mut st = self.state();
        let Some(index) = st.idle.iter().position(|p| Arc::ptr_eq(p, parker)) else {
            return IdleDecision::TaskArrived;
        };
        if st.closed || st.workers > self.settings.min_workers {
            st.idle.swap_remove(index);
            st.workers -= 1;
            IdleDecision::Retire
        } else {
            IdleDecision::Stay
        }
    }

    pub(crate) fn idle_timer_needed(&self) -> bool {
        self.state().workers > self.settings.min_workers
    }

    pub(crate) fn close(&self) {
        let idle = {
            let mut st = self.state();
            if !st.closed {
                st.closed = true;
                st.acct.shutting_down = true;
                self.published.close();
            }
            let idle = std::mem::take(&mut st.idle);
            st.workers -= idle.len();
            idle
        };
        for parker in idle {
            parker.exit();
        }
        self.changed.notify_all();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// Blocks until drained, or until `until`; `true` when drained.
    pub(crate) fn wait_drained(&self, until: Option<Instant>) -> bool {
        let mut st = self.state();
        loop {
            if self.drained(&st) {
                return true;
            }
            match until {
                None => st = self.watch(st, None),
                Some(until) => {
                    let now = Instant::now();
                    if now >= until {
                        return false;
                    }
                    st = self.watch(st, Some(until - now));
                }
            }
        }
    }

    /// The grace deadline passed: cancel what still waits in the queue. Running closures
    /// cannot be interrupted; they finish in the background.
    ///
    /// Returns `true` if closures still run. A pool whose closures all ended, but whose last
    /// outcomes are still being handed to their handles, did not time out: that is a few
    /// instructions of the pool's own, which the caller just waits for.
    pub(crate) fn cancel_queued(&self) -> bool {
        let (queued, running) = {
            let mut st = self.state();
            if st.running > 0 || !st.queue.is_empty() {
                st.acct.deadline_passed = true;
            }
            let queued = st.queue.drain();
            for _ in &queued {
                st.acct.finish(Outcome::Cancelled, None);
                st.acct.cancelled_at_deadline += 1;
            }
            (queued, st.running > 0)
        };
        let count = queued.len() as u64;
        for entry in queued {
            entry.job.finish_unrun(TaskError::cancelled());
        }
        self.publish_ended(count);
        self.changed.notify_all();
        running
    }

    /// The shutdown report; the same for every caller once the pool has drained.
    pub(crate) fn report(&self) -> ShutdownReport {
        self.state().acct.report()
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
