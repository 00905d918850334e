//! What the pool queues and its workers run: a task with a handle (shared with the
//! [`TaskHandle`](super::TaskHandle), one allocation) or a detached one, whose future sits
//! inline in the job when it is small, so spawning it allocates nothing.

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
        // SAFETY: `future` is structurally pinned: it is never moved out of a pinned
        // `Detached`; it is only polled here, in place, and dropped in place by assigning
        // `None` (`drop_future`).
        let this = unsafe { self.get_unchecked_mut() };
        let Some(future) = this.future.as_mut() else {
            return Poll::Ready(Outcome::Cancelled);
        };
        if cancel {
            this.drop_future();
            return Poll::Ready(Outcome::Cancelled);
        }
        // SAFETY: see above; `future` lives inside the pinned `Detached`.
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
        // SAFETY: pin projection onto the variant's field, which is never moved out of a
        // pinned `Job`.
        match unsafe { self.get_unchecked_mut() } {
            Job::Shared(task) => task.poll_run(cx, cancel, hook),
            Job::Detached(detached) => {
                // SAFETY: as above, `detached` lives inside the pinned `Job`.
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
