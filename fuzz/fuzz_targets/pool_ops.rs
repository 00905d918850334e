//! `pool_ops`: an arbitrary sequence of operations on an async `Pool` (try_submit, try_spawn,
//! submit_timeout, releasing, aborting, awaiting and dropping tasks, close, shutdown_timeout),
//! checked after every step against a reference model of a fixed-limit FIFO pool: every
//! counter of the snapshot, the identities, every handle's result and every shutdown report.
//!
//! Tasks finish only when the input says so (a gate) or at once, never by elapsed time, so
//! the model is exact. The runtime is current-thread with paused time: "settle" sleeps 1 ms,
//! which returns only once every other task is idle, and every wait is bounded by a
//! `timeout` in virtual time, so no input can hang the target.
#![no_main]

mod common;

use std::collections::VecDeque;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use surgepool::{Limit, Pool, ShutdownReport, SubmitError, TaskError, TaskHandle};
use tokio::sync::oneshot;
use tokio::time::timeout;

/// Longer than any wait the input can ask for in milliseconds: a wait still pending after
/// this (virtual) time is pending forever, because nothing finishes by time alone.
const BOUND: Duration = Duration::from_secs(7200);

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Returns at once.
    Ready,
    /// Panics at its first poll.
    Panic,
    /// Returns once released.
    Gated,
    /// Panics once released.
    GatedPanic,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Wait {
    Millis(u16),
    /// Duration::MAX: no deadline at all.
    Max,
}

impl Wait {
    fn duration(self) -> Duration {
        match self {
            Wait::Millis(ms) => Duration::from_millis(u64::from(ms)),
            Wait::Max => Duration::MAX,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    TrySubmit(Kind),
    TrySpawn(Kind),
    SubmitTimeout(Kind, Wait),
    Release(u8),
    Abort(u8),
    DropHandle(u8),
    Await(u8),
    Close,
    ShutdownTimeout(Wait),
    Advance(u16),
}

#[derive(Arbitrary, Debug)]
struct Input {
    limit: u8,
    queue: u8,
    min_workers: u8,
    idle_timeout: Wait,
    ops: Vec<Op>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Completed,
    Panicked,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Queued,
    Running,
    Done(End),
}

#[derive(Debug)]
struct Task {
    kind: Kind,
    released: bool,
    state: State,
}

/// What a fixed-limit pool with a FIFO queue must do, step by step.
#[derive(Debug, Default)]
struct Model {
    limit: usize,
    capacity: usize,
    closed: bool,
    shutdown_began: bool,
    submitted: u64,
    rejected: u64,
    completed: u64,
    panicked: u64,
    cancelled: u64,
    /// Finished (but not cancelled) after a shutdown began.
    drained: u64,
    /// Cancelled at a shutdown deadline.
    deadline_cancelled: u64,
    tasks: Vec<Task>,
    queue: VecDeque<usize>,
    running: Vec<usize>,
}

impl Model {
    fn live(&self) -> usize {
        self.queue.len() + self.running.len()
    }

    fn has_room(&self) -> bool {
        !self.closed && self.live() < self.limit + self.capacity
    }

    fn accept(&mut self, kind: Kind) -> usize {
        self.submitted += 1;
        let id = self.tasks.len();
        self.tasks.push(Task {
            kind,
            released: false,
            state: State::Queued,
        });
        self.queue.push_back(id);
        id
    }

    fn reject(&mut self) {
        self.submitted += 1;
        self.rejected += 1;
    }

    fn end(&mut self, id: usize, end: End) {
        self.tasks[id].state = State::Done(end);
        match end {
            End::Completed => self.completed += 1,
            End::Panicked => self.panicked += 1,
            End::Cancelled => self.cancelled += 1,
        }
        if self.shutdown_began && end != End::Cancelled {
            self.drained += 1;
        }
    }

    /// What the runtime does once every task is idle again: released tasks finish, and
    /// freed slots take queued tasks in order.
    fn settle(&mut self) {
        loop {
            let finished: Vec<usize> = self
                .running
                .iter()
                .copied()
                .filter(|&id| {
                    let t = &self.tasks[id];
                    matches!(t.kind, Kind::Ready | Kind::Panic) || t.released
                })
                .collect();
            for &id in &finished {
                let end = match self.tasks[id].kind {
                    Kind::Ready | Kind::Gated => End::Completed,
                    Kind::Panic | Kind::GatedPanic => End::Panicked,
                };
                self.end(id, end);
            }
            self.running.retain(|id| !finished.contains(id));
            let mut started = false;
            while self.running.len() < self.limit {
                let Some(id) = self.queue.pop_front() else {
                    break;
                };
                self.tasks[id].state = State::Running;
                self.running.push(id);
                started = true;
            }
            if finished.is_empty() && !started {
                return;
            }
        }
    }

    fn cancel(&mut self, id: usize) {
        match self.tasks[id].state {
            State::Queued => self.queue.retain(|&q| q != id),
            State::Running => self.running.retain(|&r| r != id),
            State::Done(_) => return,
        }
        self.end(id, End::Cancelled);
    }

    /// A shutdown's grace ran out: everything still live is cancelled.
    fn deadline(&mut self) {
        let live: Vec<usize> = self.queue.iter().chain(&self.running).copied().collect();
        for id in live {
            self.cancel(id);
            self.deadline_cancelled += 1;
        }
    }

    fn check(&self, pool: &Pool, step: usize) {
        let s = pool.snapshot();
        let accepted = self.submitted - self.rejected;
        assert_eq!(s.submitted, s.accepted + s.rejected, "step {step}: {s:?}");
        assert_eq!(
            s.accepted,
            s.completed + s.panicked + s.cancelled + s.shed + s.queued + s.running,
            "step {step}: {s:?}"
        );
        let expected = (
            self.submitted,
            self.rejected,
            accepted,
            self.completed,
            self.panicked,
            self.cancelled,
            0,
            self.queue.len() as u64,
            self.running.len() as u64,
            self.limit as u64,
        );
        let actual = (
            s.submitted,
            s.rejected,
            s.accepted,
            s.completed,
            s.panicked,
            s.cancelled,
            s.shed,
            s.queued,
            s.running,
            s.limit,
        );
        assert_eq!(actual, expected, "step {step}: pool {s:?}\nmodel {self:?}");
        assert_eq!(pool.is_closed(), self.closed, "step {step}");
    }

    fn check_report(&self, report: ShutdownReport, timed_out: bool, step: usize) {
        assert_eq!(report.drained, self.drained, "step {step}: {report:?}");
        assert_eq!(report.cancelled, self.deadline_cancelled, "step {step}: {report:?}");
        assert_eq!(report.timed_out, timed_out, "step {step}: {report:?}");
    }
}

/// The harness's side: a gate per task, a handle per submitted task.
struct Harness {
    gates: Vec<Option<oneshot::Sender<()>>>,
    handles: Vec<(usize, TaskHandle<usize>)>,
}

fn task(id: usize, kind: Kind, gate: oneshot::Receiver<()>) -> impl std::future::Future<Output = usize> {
    async move {
        if matches!(kind, Kind::Gated | Kind::GatedPanic) {
            // A gate dropped unreleased (end of input) also opens it.
            let _ = gate.await;
        }
        match kind {
            Kind::Ready | Kind::Gated => id,
            Kind::Panic | Kind::GatedPanic => common::intended_panic(),
        }
    }
}

async fn settle() {
    // Paused time advances only when every task is idle: this sleep returns once the
    // pool's workers have done all they can.
    tokio::time::sleep(Duration::from_millis(1)).await;
}

async fn run(input: Input) {
    let limit = usize::from(input.limit % 4) + 1;
    let capacity = usize::from(input.queue % 5);
    let pool = match Pool::builder()
        .limit(Limit::fixed(limit))
        .queue_capacity(capacity)
        .min_workers(usize::from(input.min_workers % 3))
        .idle_timeout(input.idle_timeout.duration())
        .build()
    {
        Ok(pool) => pool,
        // A setting the builder refuses is a clear error, not a panic: nothing to drive.
        Err(_) => return,
    };
    let mut model = Model {
        limit,
        capacity,
        ..Model::default()
    };
    let mut h = Harness {
        gates: Vec::new(),
        handles: Vec::new(),
    };
    for (step, op) in input.ops.into_iter().take(64).enumerate() {
        match op {
            Op::TrySubmit(kind) | Op::TrySpawn(kind) | Op::SubmitTimeout(kind, _) => {
                let (tx, rx) = oneshot::channel();
                let id = model.tasks.len();
                let fut = task(id, kind, rx);
                let room = model.has_room();
                let outcome: Option<Result<Option<TaskHandle<usize>>, &'static str>> = match op {
                    Op::TrySubmit(_) => Some(match pool.try_submit(fut) {
                        Ok(handle) => Ok(Some(handle)),
                        Err(e) => Err(name(&e)),
                    }),
                    Op::TrySpawn(_) => {
                        let fut = async move {
                            fut.await;
                        };
                        Some(match pool.try_spawn(fut) {
                            Ok(()) => Ok(None),
                            Err(e) => Err(name(&e)),
                        })
                    }
                    Op::SubmitTimeout(_, wait) => {
                        match timeout(BOUND, pool.submit_timeout(fut, wait.duration())).await {
                            Ok(Ok(handle)) => Some(Ok(Some(handle))),
                            Ok(Err(e)) => Some(Err(name(&e))),
                            Err(_) => None,
                        }
                    }
                    _ => unreachable!(),
                };
                match outcome {
                    Some(Ok(handle)) => {
                        assert!(room, "step {step}: admitted without room");
                        let id = model.accept(kind);
                        h.gates.push(Some(tx));
                        if let Some(handle) = handle {
                            h.handles.push((id, handle));
                        }
                    }
                    Some(Err(why)) => {
                        assert!(!room, "step {step}: refused ({why}) with room");
                        let expected = if model.closed {
                            "closed"
                        } else if matches!(op, Op::SubmitTimeout(..)) {
                            "timeout"
                        } else {
                            "full"
                        };
                        assert_eq!(why, expected, "step {step}");
                        model.reject();
                    }
                    None => {
                        // Still waiting at BOUND: only a wait without deadline may, and
                        // the dropped wait admitted nothing.
                        assert!(!room, "step {step}: waited with room");
                        assert!(matches!(op, Op::SubmitTimeout(_, Wait::Max)), "step {step}");
                        assert!(!model.closed, "step {step}: waited on a closed pool");
                    }
                }
            }
            Op::Release(k) => {
                let gated: Vec<usize> = (0..model.tasks.len())
                    .filter(|&id| {
                        let t = &model.tasks[id];
                        !t.released && !matches!(t.state, State::Done(_))
                    })
                    .collect();
                if !gated.is_empty() {
                    let id = gated[usize::from(k) % gated.len()];
                    model.tasks[id].released = true;
                    if let Some(tx) = h.gates[id].take() {
                        let _ = tx.send(());
                    }
                }
            }
            Op::Abort(k) => {
                if !h.handles.is_empty() {
                    let (id, handle) = &h.handles[usize::from(k) % h.handles.len()];
                    handle.abort();
                    model.cancel(*id);
                }
            }
            Op::DropHandle(k) => {
                if !h.handles.is_empty() {
                    let i = usize::from(k) % h.handles.len();
                    drop(h.handles.swap_remove(i));
                }
            }
            Op::Await(k) => {
                if !h.handles.is_empty() {
                    let i = usize::from(k) % h.handles.len();
                    let (id, handle) = h.handles.swap_remove(i);
                    let result = timeout(BOUND, handle).await;
                    check_result(id, result, model.tasks[id].state, step);
                }
            }
            Op::Close => {
                pool.close();
                model.closed = true;
            }
            Op::ShutdownTimeout(grace) => {
                model.closed = true;
                model.shutdown_began = true;
                let live = model.live();
                match timeout(BOUND, pool.shutdown_timeout(grace.duration())).await {
                    Ok(report) => {
                        // After settling, only gated tasks are live: none can finish by
                        // itself, so the grace runs out whenever anything is live.
                        if live > 0 {
                            model.deadline();
                        }
                        model.check_report(report, live > 0, step);
                    }
                    Err(_) => assert!(
                        live > 0 && matches!(grace, Wait::Max),
                        "step {step}: shutdown still waiting with {live} live"
                    ),
                }
            }
            Op::Advance(ms) => {
                tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
            }
        }
        settle().await;
        model.settle();
        model.check(&pool, step);
    }
    // Whatever is left: cancelled at once, and then every accepted task is accounted for.
    model.closed = true;
    model.shutdown_began = true;
    let live = model.live();
    let report = timeout(BOUND, pool.shutdown_timeout(Duration::ZERO))
        .await
        .expect("a zero grace returns");
    if live > 0 {
        model.deadline();
    }
    model.check_report(report, live > 0, usize::MAX);
    settle().await;
    model.check(&pool, usize::MAX);
    let s = pool.snapshot();
    assert_eq!((s.queued, s.running), (0, 0), "after shutdown: {s:?}");
    for (id, handle) in h.handles {
        let result = timeout(BOUND, handle).await;
        check_result(id, result, model.tasks[id].state, usize::MAX);
    }
}

fn name<F>(e: &SubmitError<F>) -> &'static str {
    match e {
        SubmitError::Full(_) => "full",
        SubmitError::Closed(_) => "closed",
        SubmitError::Timeout(_) => "timeout",
    }
}

fn check_result(
    id: usize,
    result: Result<Result<usize, TaskError>, tokio::time::error::Elapsed>,
    state: State,
    step: usize,
) {
    match (state, result) {
        (State::Done(End::Completed), Ok(Ok(v))) => assert_eq!(v, id, "step {step}"),
        (State::Done(End::Panicked), Ok(Err(e))) => assert!(e.is_panic(), "step {step}: {e}"),
        (State::Done(End::Cancelled), Ok(Err(e))) => {
            assert!(e.is_cancelled(), "step {step}: {e}")
        }
        (State::Queued | State::Running, Err(_)) => {}
        (state, result) => panic!("step {step}: task {id} is {state:?} but its handle gave {result:?}"),
    }
}

fuzz_target!(|input: Input| {
    common::allow_intended_panics();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds");
    runtime.block_on(run(input));
});
