//! The one-shot slot through which a task hands its outcome to its handle, for both pools:
//! an async handle parks a `Waker` in it, a blocking `join` waits on its condvar.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::{Context, Poll, Waker};

use crate::error::TaskError;
use crate::sync::{lock, Condvar, Mutex};

#[derive(Debug)]
pub(crate) struct Completion<T> {
    state: Mutex<State<T>>,
    joined: Condvar,
}

#[derive(Debug)]
struct State<T> {
    result: Option<Result<T, TaskError>>,
    /// `true` once a result was set: stays true after the handle took it.
    done: bool,
    waker: Option<Waker>,
    /// A thread blocks in `join`; only then is the condvar (a syscall) notified.
    joining: bool,
}

impl<T> Completion<T> {
    pub(crate) fn new() -> Completion<T> {
        Completion {
            state: Mutex::new(State {
                result: None,
                done: false,
                waker: None,
                joining: false,
            }),
            joined: Condvar::new(),
        }
    }

    /// Sets the outcome once; later calls are ignored (the first outcome wins, and a later
    /// one is dropped with any panic of its destructor caught).
    pub(crate) fn complete(&self, result: Result<T, TaskError>) {
        let mut state = lock(&self.state);
        if state.done {
            drop(state);
            let _ = catch_unwind(AssertUnwindSafe(move || drop(result)));
            return;
        }
        state.done = true;
        state.result = Some(result);
        let waker = state.waker.take();
        let joining = state.joining;
        drop(state);
        if joining {
            self.joined.notify_all();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Drops an outcome that nobody took (its handle was dropped), with a panic of its
    /// destructor caught: the owner calls it from its own `Drop`, which may run on a pool's
    /// worker, where a user's panicking `Drop` must not land.
    pub(crate) fn drop_unclaimed(&mut self) {
        let state = match self.state.get_mut() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(result) = state.result.take() {
            let _ = catch_unwind(AssertUnwindSafe(move || drop(result)));
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        lock(&self.state).done
    }

    pub(crate) fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<T, TaskError>> {
        let mut state = lock(&self.state);
        if let Some(result) = state.result.take() {
            return Poll::Ready(result);
        }
        if state.done {
            // Polled again after it returned Ready: a contract violation by the caller, but
            // never a panic in a public call; report it as cancelled.
            return Poll::Ready(Err(TaskError::cancelled()));
        }
        match &state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Blocks the calling thread until the outcome is set.
    pub(crate) fn join(&self) -> Result<T, TaskError> {
        let mut state = lock(&self.state);
        loop {
            if let Some(result) = state.result.take() {
                return result;
            }
            if state.done {
                return Err(TaskError::cancelled());
            }
            state.joining = true;
            state = match self.joined.wait(state) {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
        }
    }
}
