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

use common::model::{End, Kind, Model, State, Wait};

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use surgepool::{Limit, Pool, SubmitError, TaskError, TaskHandle};
use tokio::sync::oneshot;
use tokio::time::timeout;

/// Longer than any wait the input can ask for in milliseconds: a wait still pending after
/// this (virtual) time is pending forever, because nothing finishes by time alone.
const BOUND: Duration = Duration::from_secs(7200);

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

/// The harness's side: a gate per task, a handle per submitted task.
struct Harness {
    gates: Vec<Option<oneshot::Sender<()>>>,
    handles: Vec<(usize, TaskHandle<usize>)>,
}

fn task(
    id: usize,
    kind: Kind,
    gate: oneshot::Receiver<()>,
) -> impl std::future::Future<Output = usize> {
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
                // Closing starts the drain: what finishes from now on counts as drained
                // (`ShutdownReport::drained`), whether or not a shutdown call follows.
                model.shutdown_began = true;
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
        model.check(&pool.snapshot(), pool.is_closed(), step);
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
    model.check(&pool.snapshot(), pool.is_closed(), usize::MAX);
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
        (state, result) => {
            panic!("step {step}: task {id} is {state:?} but its handle gave {result:?}")
        }
    }
}

fuzz_target!(|input: Input| common::run_paused(run(input)));
