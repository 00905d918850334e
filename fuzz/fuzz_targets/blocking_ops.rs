//! `blocking_ops`: an arbitrary sequence of operations on a `BlockingPool` (try_submit,
//! try_spawn, submit_timeout, spawn_timeout, releasing, joining and dropping handles, close,
//! shutdown_timeout and shutdown), checked after every step against the reference model of
//! `common/model.rs`: every counter of the snapshot, the identities, every handle's result
//! and every shutdown report.
//!
//! Closures run on real threads, so the model cannot be checked the instant an operation
//! returns: "settle" polls the snapshot until it equals the model's (at most `SETTLE`), then
//! asserts it. Every wait is bounded: a closure's gate opens by itself after `GATE_MAX`, a
//! wait without deadline is ended by closing the pool from a helper thread, and a shutdown
//! without deadline by releasing every gate from one.
#![no_main]

mod common;

use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use common::model::{counts, End, Kind, Model, State, Wait};
use libfuzzer_sys::fuzz_target;
use surgepool::{BlockingHandle, BlockingPool, Limit, SubmitError, TaskError};

/// How long the pool may take to reach the model's state (threads are real, the machine
/// may be busy).
const SETTLE: Duration = Duration::from_secs(20);
/// A gate no one opens opens by itself: no closure blocks a thread forever.
const GATE_MAX: Duration = Duration::from_secs(120);
/// Helper threads act after this (real) delay, once the main thread is waiting.
const HELPER_DELAY: Duration = Duration::from_millis(5);

#[derive(Arbitrary, Debug)]
enum Op {
    TrySubmit(Kind),
    TrySpawn(Kind),
    SubmitTimeout(Kind, Wait),
    SpawnTimeout(Kind, Wait),
    Release(u8),
    Join(u8),
    DropHandle(u8),
    Close,
    ShutdownTimeout(Wait),
}

#[derive(Arbitrary, Debug)]
struct Input {
    limit: u8,
    queue: u8,
    min_workers: u8,
    ops: Vec<Op>,
}

/// What a gated closure waits on. A mutex and a condvar, not a channel: std's channels
/// keep a per-thread context in a thread-local, which the pool's threads would then hold
/// until they exit; LeakSanitizer's checks during fuzzing reported one such 48-byte context
/// once (in 18k inputs, not reproducible), so the closures allocate nothing thread-local.
#[derive(Default)]
struct Latch {
    open: Mutex<bool>,
    opened: Condvar,
}

/// Opens its latch when sent or dropped (as dropping a channel's sender ends a `recv`).
struct Gate(Arc<Latch>);

impl Gate {
    fn send(self) {}
}

impl Drop for Gate {
    fn drop(&mut self) {
        *self.0.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.0.opened.notify_all();
    }
}

fn gate() -> (Gate, Arc<Latch>) {
    let latch = Arc::new(Latch::default());
    (Gate(latch.clone()), latch)
}

fn closure(id: usize, kind: Kind, gate: Arc<Latch>) -> impl FnOnce() -> usize + Send {
    move || {
        if matches!(kind, Kind::Gated | Kind::GatedPanic) {
            let open = gate.open.lock().unwrap_or_else(|e| e.into_inner());
            let _ = gate
                .opened
                .wait_timeout_while(open, GATE_MAX, |open| !*open);
        }
        match kind {
            Kind::Ready | Kind::Gated => id,
            Kind::Panic | Kind::GatedPanic => common::intended_panic(),
        }
    }
}

/// Waits until the pool's snapshot equals the model's, then checks it.
fn settle(pool: &BlockingPool, model: &mut Model, step: usize) {
    model.settle();
    let start = Instant::now();
    while counts(&pool.snapshot()) != model.expected() && start.elapsed() < SETTLE {
        thread::sleep(Duration::from_micros(50));
    }
    model.check(&pool.snapshot(), pool.is_closed(), step);
}

/// Ms waits are kept short: they are real time here.
fn real(wait: Wait) -> Duration {
    match wait {
        Wait::Millis(ms) => Duration::from_millis(u64::from(ms % 8)),
        Wait::Max => Duration::MAX,
    }
}

fn check_join(id: usize, result: Result<usize, TaskError>, state: State, step: usize) {
    match (state, result) {
        (State::Done(End::Completed), Ok(v)) => assert_eq!(v, id, "step {step}"),
        (State::Done(End::Panicked), Err(e)) => assert!(e.is_panic(), "step {step}: {e}"),
        (State::Done(End::Cancelled), Err(e)) => assert!(e.is_cancelled(), "step {step}: {e}"),
        (state, result) => panic!("step {step}: task {id} is {state:?}, joined {result:?}"),
    }
}

fn release_all(model: &mut Model, gates: &mut [Option<Gate>]) -> Vec<Gate> {
    let mut opened = Vec::new();
    for (id, gate) in gates.iter_mut().enumerate() {
        if let Some(gate) = gate.take() {
            model.tasks[id].released = true;
            opened.push(gate);
        }
    }
    opened
}

fn run(input: Input) {
    let limit = usize::from(input.limit % 3) + 1;
    let capacity = usize::from(input.queue % 4);
    let Ok(pool) = BlockingPool::builder()
        .limit(Limit::fixed(limit))
        .queue_capacity(capacity)
        .min_workers(usize::from(input.min_workers % 2))
        .build()
    else {
        return;
    };
    let mut model = Model {
        limit,
        capacity,
        ..Model::default()
    };
    let mut gates: Vec<Option<Gate>> = Vec::new();
    let mut handles: Vec<(usize, BlockingHandle<usize>)> = Vec::new();
    for (step, op) in input.ops.into_iter().take(32).enumerate() {
        match op {
            Op::TrySubmit(kind)
            | Op::TrySpawn(kind)
            | Op::SubmitTimeout(kind, _)
            | Op::SpawnTimeout(kind, _) => {
                let (tx, rx) = gate();
                let id = model.tasks.len();
                let f = closure(id, kind, rx);
                let room = model.has_room();
                let waits = matches!(op, Op::SubmitTimeout(..) | Op::SpawnTimeout(..));
                // A wait without deadline and without room: a helper closes the pool.
                let closer = match op {
                    Op::SubmitTimeout(_, Wait::Max) | Op::SpawnTimeout(_, Wait::Max)
                        if !room && !model.closed =>
                    {
                        let pool = pool.clone();
                        Some(thread::spawn(move || {
                            thread::sleep(HELPER_DELAY);
                            pool.close();
                        }))
                    }
                    _ => None,
                };
                let outcome: Result<Option<BlockingHandle<usize>>, &'static str> = match op {
                    Op::TrySubmit(_) => pool.try_submit(f).map(Some).map_err(|e| name(&e)),
                    Op::SubmitTimeout(_, wait) => pool
                        .submit_timeout(f, real(wait))
                        .map(Some)
                        .map_err(|e| name(&e)),
                    Op::TrySpawn(_) => pool
                        .try_spawn(move || {
                            f();
                        })
                        .map(|()| None)
                        .map_err(|e| name(&e)),
                    Op::SpawnTimeout(_, wait) => pool
                        .spawn_timeout(
                            move || {
                                f();
                            },
                            real(wait),
                        )
                        .map(|()| None)
                        .map_err(|e| name(&e)),
                    _ => unreachable!(),
                };
                if let Some(closer) = closer {
                    closer.join().expect("the closer does not panic");
                    model.closed = true;
                    // Closing starts the drain, whoever closes (as in `Op::Close`).
                    model.shutdown_began = true;
                }
                match outcome {
                    Ok(handle) => {
                        assert!(room, "step {step}: admitted without room");
                        let id = model.accept(kind);
                        gates.push(Some(tx));
                        if let Some(handle) = handle {
                            handles.push((id, handle));
                        }
                    }
                    Err(why) => {
                        assert!(!room, "step {step}: refused ({why}) with room");
                        let expected = if model.closed {
                            "closed"
                        } else if waits {
                            "timeout"
                        } else {
                            "full"
                        };
                        assert_eq!(why, expected, "step {step}");
                        model.reject();
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
                    if let Some(tx) = gates[id].take() {
                        tx.send();
                    }
                }
            }
            Op::Join(k) => {
                if !handles.is_empty() {
                    let i = usize::from(k) % handles.len();
                    let state = model.tasks[handles[i].0].state;
                    let done = matches!(state, State::Done(_));
                    // The pool counts an outcome (what `settle` waited for) just before it
                    // hands it to the handle: a handle may lag its count by an instant.
                    let start = Instant::now();
                    let mut finished = handles[i].1.is_finished();
                    while done && !finished && start.elapsed() < SETTLE {
                        thread::sleep(Duration::from_micros(50));
                        finished = handles[i].1.is_finished();
                    }
                    assert_eq!(finished, done, "step {step}");
                    // Only a finished closure is joined: join blocks without a bound.
                    if finished {
                        let (id, handle) = handles.swap_remove(i);
                        check_join(id, handle.join(), state, step);
                    }
                }
            }
            Op::DropHandle(k) => {
                if !handles.is_empty() {
                    let i = usize::from(k) % handles.len();
                    drop(handles.swap_remove(i));
                }
            }
            Op::Close => {
                pool.close();
                model.closed = true;
                // Closing starts the drain (see pool_ops).
                model.shutdown_began = true;
            }
            Op::ShutdownTimeout(grace) => {
                model.closed = true;
                model.shutdown_began = true;
                if matches!(grace, Wait::Max) {
                    // Without deadline: a helper opens every gate, so it drains.
                    let opened = release_all(&mut model, &mut gates);
                    let opener = thread::spawn(move || {
                        thread::sleep(HELPER_DELAY);
                        for gate in opened {
                            gate.send();
                        }
                    });
                    let before = model.drained;
                    let report = pool.shutdown();
                    opener.join().expect("the opener does not panic");
                    model.settle();
                    check_drain_report(&mut model, report, before, step);
                } else {
                    let report = pool.shutdown_timeout(real(grace));
                    // Only gated closures are live after settling: the grace runs out
                    // whenever anything is live. Queued ones are cancelled; running ones
                    // cannot be interrupted and go on.
                    let timed_out = model.live() > 0;
                    let queued: Vec<usize> = model.queue.iter().copied().collect();
                    for id in queued {
                        model.cancel(id);
                        model.deadline_cancelled += 1;
                    }
                    model.check_report(report, timed_out, step);
                }
            }
        }
        settle(&pool, &mut model, step);
    }
    // Open every gate and drain: every accepted closure is accounted for.
    for gate in release_all(&mut model, &mut gates) {
        gate.send();
    }
    model.closed = true;
    model.shutdown_began = true;
    let before = model.drained;
    let report = pool.shutdown();
    model.settle();
    check_drain_report(&mut model, report, before, usize::MAX);
    settle(&pool, &mut model, usize::MAX);
    let s = pool.snapshot();
    assert_eq!((s.queued, s.running), (0, 0), "after shutdown: {s:?}");
    for (id, handle) in handles {
        check_join(id, handle.join(), model.tasks[id].state, usize::MAX);
    }
}

/// A shutdown that drained after gates were opened: a closure may finish just before the
/// shutdown began (not drained) or after (drained); the model cannot know which, so the
/// report's `drained` is checked within those bounds and the model takes its figure.
fn check_drain_report(
    model: &mut Model,
    report: surgepool::ShutdownReport,
    before: u64,
    step: usize,
) {
    assert!(
        (before..=model.drained).contains(&report.drained),
        "step {step}: drained {} outside {before}..={} ({report:?})",
        report.drained,
        model.drained
    );
    model.drained = report.drained;
    model.check_report(report, false, step);
}

fn name<F>(e: &SubmitError<F>) -> &'static str {
    match e {
        SubmitError::Full(_) => "full",
        SubmitError::Closed(_) => "closed",
        SubmitError::Timeout(_) => "timeout",
    }
}

fuzz_target!(|input: Input| {
    common::allow_intended_panics();
    run(input);
});
