//! What the pool queues and its workers run: a task with a handle (shared with the
//! [`TaskHandle`](super::TaskHandle), one allocation) or a detached one, whose future sits
//! inline in the job when it is small, so spawning it allocates nothing.
//!
//! # Unsafe code and what watches it
//!
//! A detached future lives *inside* the job (inline in a [`SmallBox`] when it fits in
//! [`INLINE_BYTES`]), so pinning the future means pinning the job. The invariant every
//! `unsafe` block here relies on: **a job is moved only before its first poll**. It is
//! moved while queued and while handed to a worker; the worker then pins the `Running`
//! that holds it (`pin!` in `worker::run`, a frame that is itself pinned) and from then on
//! only polls it in place and drops it in place (`future = None`, or the frame's drop).
//! `finish_unrun` takes the job by value, and is called only on jobs that never ran.
//!
//! `smallbox!` itself expands to an `unsafe` call (`SmallBox::new_unchecked(val, ptr)`),
//! sound because the macro passes a pointer to the very value it stores, so the unsized
//! metadata (the `dyn Future` vtable) belongs to that value.
//!
//! A violation (a polled future moved, or dropped twice) is caught by
//! `tests/pool_pinning.rs` (its `!Unpin` futures count any poll or drop at a new address;
//! its self-borrowing async block reads freed memory under ASan), and by the ASan run of the
//! whole suite in `.ci/run` (`pool_abort`, `pool_destructor_panics`, `pool_shutdown`), and by
//! the `pool_ops` fuzz target, which spawns, aborts and cancels detached tasks midway.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use smallbox::space::S8;
use smallbox::{smallbox, SmallBox};

use super::task::SharedTask;
use super::PanicHook;
use crate::accounting::Outcome;
use crate::error::TaskError;
use crate::sync::Arc;

/// Futures up to this many bytes (and of alignment at most 8) are stored inline; the
/// public docs of `Pool::try_spawn` promise it.
const INLINE_BYTES: usize = 64;
const _: () = assert!(std::mem::size_of::<S8>() == INLINE_BYTES);

/// A type-erased unit of work.
pub(crate) enum Job {
    Shared(SharedTask),
    Detached(Detached),
}

/// A detached task's future, inline when it fits in [`INLINE_BYTES`].
pub(crate) struct Detached {
    future: Option<SmallBox<dyn Future<Output = ()> + Send, S8>>,
}

impl Detached {
    pub(crate) fn new<F>(future: F) -> Detached
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Detached {
            // SAFETY (the macro's `unsafe { SmallBox::new_unchecked(val, ptr) }`): `ptr` is
            // the address of `val` itself, taken by the macro, so the `dyn Future` metadata
            // it carries is `F`'s; `S8` is word-aligned, and a future of larger alignment
            // goes to the heap (smallbox checks size and alignment). Inline vs heap is
            // tested by `tests/pool_pinning.rs` (both sizes) under ASan.
            future: Some(smallbox!(future)),
        }
    }

    /// Drops the future in place (it may be pinned); a panicking destructor is caught, and
    /// the slot is `None` afterwards either way.
    fn drop_future(&mut self) {
        let _ = catch_unwind(AssertUnwindSafe(|| self.future = None));
    }

    fn poll_run(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        cancel: bool,
        hook: Option<&PanicHook>,
    ) -> Poll<Outcome> {
        // SAFETY: we never move out of `this`: `future` is structurally pinned (it is only
        // polled below, in place, and dropped in place by assigning `None` in
        // `drop_future`), and `Detached` has no other field. `Detached::drop` also drops it
        // in place. So handing out `&mut Detached` cannot move the pinned future.
        let this = unsafe { self.get_unchecked_mut() };
        let Some(future) = this.future.as_mut() else {
            return Poll::Ready(Outcome::Cancelled);
        };
        if cancel {
            this.drop_future();
            return Poll::Ready(Outcome::Cancelled);
        }
        // SAFETY: `future` is a `&mut` to the future itself (inside the `SmallBox`: inline
        // storage of the pinned `Detached`, or its heap allocation). It stays at this
        // address until it is dropped: the `Detached` is pinned (so the inline bytes do not
        // move), the `SmallBox` is never replaced except by dropping it (`future = None`),
        // and the job is never moved after its first poll (module docs). Caught under ASan
        // by `tests/pool_pinning.rs` (`a_small_detached_future_...`, `a_self_borrowing_...`).
        let future = unsafe { Pin::new_unchecked(future) };
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => {
                this.drop_future();
                Poll::Ready(Outcome::Completed)
            }
            Err(payload) => {
                this.drop_future();
                let error = TaskError::panic(payload);
                if let Some(hook) = hook {
                    // A panicking hook must not take the worker down either.
                    let _ = catch_unwind(AssertUnwindSafe(|| hook(&error)));
                }
                Poll::Ready(Outcome::Panicked)
            }
        }
    }
}

impl Drop for Detached {
    /// A detached future still here was never finished (its worker was dropped with the
    /// runtime): drop it with a panic in its destructor caught, as everywhere else.
    fn drop(&mut self) {
        if self.future.is_some() {
            self.drop_future();
        }
    }
}

impl Job {
    /// Polls the task once, with panics caught; `cancel` (or an earlier `abort`) drops it
    /// instead, and it ends as cancelled.
    pub(crate) fn poll_run(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        cancel: bool,
        hook: Option<&PanicHook>,
    ) -> Poll<Outcome> {
        // SAFETY: pin projection onto the variant's field. We never move out of the
        // `&mut Job`: the `Shared` arm only takes `&` to the `Arc` (its future is pinned by
        // the `Arc`'s allocation, see `task.rs`), and the `Detached` arm re-pins its field
        // at once. `Job` has no `Drop` impl, and no code assigns another variant to a
        // pinned job (a job is moved only before its first poll, see the module docs).
        match unsafe { self.get_unchecked_mut() } {
            Job::Shared(task) => task.poll_run(cx, cancel, hook),
            Job::Detached(detached) => {
                // SAFETY: `detached` is a field of the pinned `Job`, so it stays at this
                // address until the job is dropped: nothing assigns another variant to a
                // pinned job, and nothing moves the `Detached` out of it (`finish_unrun`
                // takes the job by value, and only jobs that never ran). Caught by
                // `tests/pool_pinning.rs` and the `pool_ops` fuzz target under ASan.
                let detached = unsafe { Pin::new_unchecked(detached) };
                detached.poll_run(cx, cancel, hook)
            }
        }
    }

    /// Hands a finished task's outcome to its handle (after the pool counted it).
    pub(crate) fn publish(&self) {
        if let Job::Shared(task) = self {
            task.publish();
        }
    }

    /// Ends a task that never ran (shed, or cancelled while queued).
    pub(crate) fn finish_unrun(self, error: TaskError) {
        match self {
            Job::Shared(task) => task.finish_unrun(error),
            Job::Detached(mut detached) => detached.drop_future(),
        }
    }

    /// The task behind the handle, if this job has one.
    pub(crate) fn shared(&self) -> Option<SharedTask> {
        match self {
            Job::Shared(task) => Some(task.clone()),
            Job::Detached(_) => None,
        }
    }

    /// `true` if this is the task behind a handle (for `abort`).
    pub(crate) fn is(&self, task: &SharedTask) -> bool {
        matches!(self, Job::Shared(mine) if Arc::ptr_eq(mine, task))
    }
}
