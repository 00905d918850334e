//! A worker: a tokio task that runs one pool task at a time, then takes the next queued one
//! or parks idle until a task is handed to it, its idle timeout fires, or the pool closes.
//!
//! Workers start on demand: a task that gets a slot while no worker is idle gets a new
//! worker at once, with the task as its first job (no polling tick). Idle workers are kept
//! LIFO, so the most recently busy worker (warm caches) gets the next task and the coldest
//! ones time out first.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use tokio::time::{Instant, Sleep};

use super::inner::{AfterRun, IdleDecision, Inner, Running};
use super::task::SharedTask;
use crate::clock::Stamp;
use crate::sync::{lock, Arc, Mutex};

/// How long a worker runs queued tasks back to back before it yields its thread, in
/// nanoseconds.
const HOLD_LIMIT_NS: u64 = 1_000_000;

/// A worker running tasks back to back charges tokio's coop budget once per this many.
const BUDGET_EVERY: u32 = 16;

/// Where an idle worker waits for a task.
#[derive(Debug)]
pub(crate) struct Parker {
    state: Mutex<ParkState>,
}

#[derive(Debug, Default)]
struct ParkState {
    job: Option<Running>,
    waker: Option<Waker>,
    exit: bool,
}

impl Parker {
    pub(crate) fn new() -> Parker {
        Parker {
            state: Mutex::new(ParkState::default()),
        }
    }

    /// Hands a task over; returns the waker to wake once the pool's lock is released.
    pub(crate) fn give(&self, running: Running) -> Option<Waker> {
        let mut st = lock(&self.state);
        st.job = Some(running);
        st.waker.clone()
    }

    /// Takes a task handed over but not yet picked up (the worker is gone).
    pub(crate) fn take_job(&self) -> Option<Running> {
        lock(&self.state).job.take()
    }

    /// Tells an idle worker to end.
    pub(crate) fn exit(&self) {
        let waker = {
            let mut st = lock(&self.state);
            st.exit = true;
            st.waker.clone()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Wakes the worker's task, wherever it is (a shutdown deadline).
    pub(crate) fn wake_task(&self) {
        let waker = lock(&self.state).waker.clone();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn register(&self, cx: &mut Context<'_>) {
        let mut st = lock(&self.state);
        match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.waker = Some(cx.waker().clone()),
        }
    }

    fn poll_job(&self, cx: &mut Context<'_>) -> Poll<Option<Running>> {
        let mut st = lock(&self.state);
        if let Some(job) = st.job.take() {
            return Poll::Ready(Some(job));
        }
        if st.exit {
            return Poll::Ready(None);
        }
        match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// A worker's hold on its pool. The runtime drops a worker's future without finishing it
/// when it shuts down (or when the worker is spawned onto a runtime that already has): then
/// `drop` hands whatever the worker held back to the pool, which cancels and counts it and
/// closes, so no handle waits forever and nothing is left counted as running.
///
/// The worker's own code may also panic (user code never does here: tasks, their outputs,
/// payloads and futures are all dropped under `catch_unwind`). Such a panic unwinds through
/// the worker's frame while it is between two `.await`s, which is how `drop` tells it from
/// a runtime's shutdown (which drops the future while it waits at one): then the pool stays
/// open and the task held next goes to another worker.
pub(crate) struct Worker {
    pub(crate) inner: Arc<Inner>,
    pub(crate) parker: Arc<Parker>,
    /// The task to run next (the first, handed over at spawn).
    pub(crate) next: Option<Running>,
    /// The task being run (moved out of `next` and pinned in the worker's frame): its weight
    /// and, if it has a handle, the task, to cancel it if the worker is dropped mid-run.
    pub(crate) current: Option<(u64, Option<SharedTask>)>,
    /// Set when the worker ends normally (it is already counted out).
    pub(crate) exited: bool,
    /// The worker waits at an `.await` (or was never polled).
    pub(crate) suspended: bool,
    /// A task was counted as ended but not yet published (`Inner::publish_ended`).
    pub(crate) unpublished: bool,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let next = self.next.take();
        let current = self.current.take();
        if !self.exited {
            if std::thread::panicking() && !self.suspended {
                self.inner.worker_panicked(&self.parker, next, current);
            } else {
                self.inner.worker_lost(&self.parker, next, current);
            }
        }
        if self.unpublished {
            // Its handle already has its outcome (set before anything that can panic).
            self.inner.publish_ended(1);
        }
    }
}

/// Awaits `fut` with the worker marked as waiting (see [`Worker`]).
async fn suspend<F: Future>(worker: &mut Worker, fut: F) -> F::Output {
    worker.suspended = true;
    let out = fut.await;
    worker.suspended = false;
    out
}

/// The worker's life.
pub(crate) async fn run(mut worker: Worker) {
    let (inner, parker) = (worker.inner.clone(), worker.parker.clone());
    // Register this task's waker first, so a shutdown deadline can wake it mid-task.
    poll_fn(|cx| {
        parker.register(cx);
        Poll::Ready(())
    })
    .await;
    worker.suspended = false;
    let mut idle_timer: Option<Pin<Box<Sleep>>> = None;
    // When this worker last gave its thread back to the runtime.
    let mut holding_since: Option<Stamp> = None;
    // Tasks run back to back since the worker last gave its thread back.
    let mut back_to_back: u32 = 0;
    loop {
        let running = match worker.next.take() {
            Some(running) => running,
            None => {
                match suspend(&mut worker, wait_for_job(&inner, &parker, &mut idle_timer)).await {
                    Some(running) => running,
                    None => {
                        worker.exited = true;
                        return;
                    }
                }
            }
        };
        // The worker holds its thread from the start of the first task it runs after it
        // got the thread back (or the moment that task was handed over, a little earlier:
        // no clock read is needed).
        let since = *holding_since.get_or_insert(running.started);
        worker.current = Some((running.weight, running.job.shared()));
        let step = {
            // Pinned here until dropped at the end of this block: a detached job's future
            // is stored inline and is polled where it lies.
            let mut running = pin!(running);
            let run = poll_fn(|cx| {
                let cancel = inner.cancel_running.load(crate::sync::Ordering::Acquire);
                running
                    .as_mut()
                    .job()
                    .poll_run(cx, cancel, inner.settings.on_panic.as_ref())
            });
            let outcome = suspend(&mut worker, run).await;
            let after = inner.finish(&parker, &running, outcome);
            worker.current = None;
            worker.unpublished = true;
            // What the worker holds next is in `worker` before any more code runs, so that
            // nothing can lose it.
            let step = match after {
                AfterRun::Run(next) => {
                    let started = next.started;
                    worker.next = Some(next);
                    Step::Run(started)
                }
                AfterRun::Idle => Step::Idle,
                AfterRun::Exit => {
                    worker.exited = true;
                    Step::Exit
                }
            };
            running.job.publish();
            step
            // `running` is dropped here, maybe with the task's output: `Task`'s `Drop`
            // catches a panic of the output's destructor.
        };
        worker.unpublished = false;
        inner.publish_ended(1);
        match step {
            Step::Run(now) => {
                // Back-to-back tasks must not starve the runtime's other tasks (timers, the
                // tasks they wake, other workers). Coop budget alone is not enough: it
                // yields after 128 units, which is 2.5 s of 20 ms CPU-bound tasks. So the
                // worker also yields once it has held its thread for `HOLD_LIMIT_NS`,
                // counted from the start of the first task it ran (the time comes free,
                // since a task taken from the queue is stamped with it). Counted from the
                // second task instead, a worker ran two 20 ms CPU-bound tasks before it
                // yielded: with three slots on two threads, the third worker waited behind
                // two of them, 60 ms for a 20 ms task (the lab's CPU work, every fourth task
                // while the adaptive limit tested a third slot). Time a task spent waiting
                // counts too, so a worker yields after every task that lived 1 ms or more:
                // workers whose tasks are ready to finish run first (the lab's mixed work
                // at a fixed limit of 4: p99 28 ms, against 36 ms when only a task that
                // held the thread throughout counted; waiting work alike within the
                // noise). The budget is charged once per `BUDGET_EVERY` tasks: per task it
                // cost ~90 instructions, and tasks that use tokio resources charge it anyway.
                back_to_back += 1;
                if now.nanos_since(since) >= HOLD_LIMIT_NS {
                    suspend(&mut worker, tokio::task::yield_now()).await;
                    // The task it holds was stamped before the yield: the thread is held
                    // again from now (one clock read per yield, at most one per ms held).
                    (holding_since, back_to_back) = (Some(inner.settings.clock.now()), 0);
                } else if back_to_back % BUDGET_EVERY == 0 {
                    suspend(&mut worker, tokio::task::consume_budget()).await;
                }
            }
            Step::Idle => (holding_since, back_to_back) = (None, 0),
            Step::Exit => return,
        }
    }
}

/// What a worker does once it published a task.
enum Step {
    /// Runs the task it holds next (in `Worker::next`), taken from the queue at this time.
    Run(Stamp),
    Idle,
    Exit,
}

/// Parks until a task arrives (`Some`) or the worker must end (`None`).
async fn wait_for_job(
    inner: &Arc<Inner>,
    parker: &Arc<Parker>,
    idle_timer: &mut Option<Pin<Box<Sleep>>>,
) -> Option<Running> {
    // An idle timeout too long to represent (`Duration::MAX`) means "never retire".
    let deadline = if inner.idle_timer_needed() {
        Instant::now().checked_add(inner.settings.idle_timeout)
    } else {
        None
    };
    let mut timed = deadline.is_some();
    if let Some(deadline) = deadline {
        match idle_timer {
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => *idle_timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }
    loop {
        let fired = poll_fn(|cx| {
            if let Poll::Ready(job) = parker.poll_job(cx) {
                return Poll::Ready(Err(job));
            }
            match idle_timer {
                Some(sleep) if timed => sleep.as_mut().poll(cx).map(Ok),
                _ => Poll::Pending,
            }
        })
        .await;
        match fired {
            Err(job) => return job,
            Ok(()) => match inner.idle_timeout(parker) {
                IdleDecision::Retire => return None,
                IdleDecision::Stay => timed = false,
                IdleDecision::TaskArrived => timed = false,
            },
        }
    }
}
