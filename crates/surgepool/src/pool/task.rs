//! One task of the async pool: its future, its outcome slot and its abort flag, in a single
//! allocation shared by the worker that runs it and the [`TaskHandle`] that awaits it.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::inner::Inner;
use super::PanicHook;
use crate::accounting::Outcome;
use crate::completion::Completion;
use crate::error::TaskError;
use crate::sync::{lock, Arc, AtomicBool, Mutex, Ordering};

/// A task with a handle, type-erased: shared by its worker and its [`TaskHandle`].
pub(crate) type SharedTask = Arc<dyn RawTask>;

/// The worker's view of a task.
pub(crate) trait RawTask: Send + Sync + 'static {
    /// Polls the future once, with panics caught. `cancel` (a shutdown deadline) or an
    /// earlier `abort` drops the future instead, and the task ends as cancelled.
    fn poll_run(
        &self,
        cx: &mut Context<'_>,
        cancel: bool,
        hook: Option<&PanicHook>,
    ) -> Poll<Outcome>;

    /// Hands the stored outcome to the handle. The worker calls it after the pool counted
    /// the outcome, so a caller who awaited the handle sees it in the next snapshot.
    fn publish(&self);

    /// Ends a task that never ran (shed, or cancelled while queued), dropping its future.
    fn finish_unrun(&self, error: TaskError);

    /// Marks the task aborted and wakes its worker, which drops it at the next poll.
    fn set_aborted(&self);
}

pub(crate) struct Task<F: Future> {
    run: Mutex<Stage<F, F::Output>>,
    completion: Completion<F::Output>,
    aborted: AtomicBool,
    /// The waker of the worker running the task, for `abort`. A separate lock from `run`,
    /// so a task may abort itself from inside its own poll.
    runner: Mutex<Option<Waker>>,
}

enum Stage<F, T> {
    /// Not polled yet.
    Pending(F),
    /// Polled at least once, so pinned; the runner's waker is registered.
    Started(F),
    /// Finished; the outcome waits for `publish`.
    Finished(Result<T, TaskError>),
    Done,
}

impl<F> Task<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    pub(crate) fn new(future: F) -> Arc<Task<F>> {
        Arc::new(Task {
            run: Mutex::new(Stage::Pending(future)),
            completion: Completion::new(),
            aborted: AtomicBool::new(false),
            runner: Mutex::new(None),
        })
    }

    fn drop_future(&self, stage: &mut Stage<F, F::Output>) {
        // Drop the future in place (it may be pinned). A panicking destructor is caught: the
        // assignment still stores `Done` during unwinding, so the future is never dropped
        // twice, and the pool's worker lives on.
        let _ = catch_unwind(AssertUnwindSafe(|| *stage = Stage::Done));
    }
}

impl<F: Future> Drop for Task<F> {
    /// The last owner (the worker, the handle, or a queue that ends the task) drops the
    /// future or the output nobody took. Both are user values: a panic in their `Drop` is
    /// caught here, so that it never lands on a worker (which would lose the task it holds
    /// next) nor in whoever dropped the handle.
    fn drop(&mut self) {
        let stage = match self.run.get_mut() {
            Ok(stage) => stage,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Assigning stores `Done` even when the old value's destructor panics.
        let _ = catch_unwind(AssertUnwindSafe(|| *stage = Stage::Done));
        self.completion.drop_unclaimed();
    }
}

impl<F> RawTask for Task<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn poll_run(
        &self,
        cx: &mut Context<'_>,
        cancel: bool,
        hook: Option<&PanicHook>,
    ) -> Poll<Outcome> {
        let mut stage = lock(&self.run);
        if cancel || self.aborted.load(Ordering::Acquire) {
            self.drop_future(&mut stage);
            *stage = Stage::Finished(Err(TaskError::cancelled()));
            return Poll::Ready(Outcome::Cancelled);
        }
        if let Stage::Pending(_) = &*stage {
            // First poll: register the runner (a worker task's waker never changes). The
            // future has not been pinned yet, so moving it to `Started` is fine.
            *lock(&self.runner) = Some(cx.waker().clone());
            if let Stage::Pending(f) = std::mem::replace(&mut *stage, Stage::Done) {
                *stage = Stage::Started(f);
            }
            if self.aborted.load(Ordering::Acquire) {
                // Aborted between the check above and the registration.
                self.drop_future(&mut stage);
                *stage = Stage::Finished(Err(TaskError::cancelled()));
                return Poll::Ready(Outcome::Cancelled);
            }
        }
        let future = match &mut *stage {
            Stage::Started(f) => f,
            Stage::Pending(_) | Stage::Finished(_) | Stage::Done => {
                return Poll::Ready(Outcome::Cancelled)
            }
        };
        // SAFETY: a `Started` future is never moved: it sits inside the `Arc<Task<F>>`
        // allocation (which never moves), behind the `run` lock we hold; it is only polled
        // here, in place, and dropped in place by assigning `Stage::Done` (`drop_future`,
        // `Task::drop`). The only move of the future is `Pending` -> `Started` above,
        // before its first poll; `publish` moves a `Finished` stage, which holds no future.
        // So from its first poll until its drop the future stays at one address, which is
        // what `Pin` requires. Caught by `tests/pool_pinning.rs`
        // (`a_future_with_a_handle_...`, `futures_cancelled_midway_...`) and, under ASan,
        // by the `pool_abort` tests and the `pool_ops` fuzz target (aborts mid-run).
        let future = unsafe { Pin::new_unchecked(future) };
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                self.drop_future(&mut stage);
                *stage = Stage::Finished(Ok(output));
                Poll::Ready(Outcome::Completed)
            }
            Err(payload) => {
                self.drop_future(&mut stage);
                drop(stage);
                let error = TaskError::panic(payload);
                if let Some(hook) = hook {
                    // A panicking hook must not take the worker down either.
                    let _ = catch_unwind(AssertUnwindSafe(|| hook(&error)));
                }
                *lock(&self.run) = Stage::Finished(Err(error));
                Poll::Ready(Outcome::Panicked)
            }
        }
    }

    fn publish(&self) {
        let finished = std::mem::replace(&mut *lock(&self.run), Stage::Done);
        if let Stage::Finished(result) = finished {
            self.completion.complete(result);
        }
    }

    fn finish_unrun(&self, error: TaskError) {
        let mut stage = lock(&self.run);
        self.drop_future(&mut stage);
        drop(stage);
        self.completion.complete(Err(error));
    }

    fn set_aborted(&self) {
        self.aborted.store(true, Ordering::Release);
        let runner = lock(&self.runner).clone();
        if let Some(waker) = runner {
            waker.wake();
        }
    }
}

/// A handle to a task submitted to a [`Pool`](crate::Pool).
///
/// Await it for the task's result. Dropping it *detaches* the task: it still runs, and is
/// still counted; its output is then dropped by the pool, with a panic in its destructor
/// caught (as is one in the destructor of an output the handle holds when dropped).
/// [`abort`](TaskHandle::abort) cancels it.
///
/// # Examples
///
/// ```
/// use surgepool::Pool;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = Pool::builder().build().unwrap();
/// let handle = pool.try_submit(async { "done" }).unwrap();
/// assert_eq!(handle.await.unwrap(), "done");
///
/// let forever = pool.try_submit(std::future::pending::<()>()).unwrap();
/// forever.abort();
/// assert!(forever.await.unwrap_err().is_cancelled());
/// # }
/// ```
pub struct TaskHandle<T> {
    task: Arc<dyn HandleSide<T>>,
    pool: Arc<Inner>,
}

/// The handle's view of a task.
pub(crate) trait HandleSide<T>: Send + Sync {
    fn completion(&self) -> &Completion<T>;
    fn job(self: Arc<Self>) -> SharedTask;
}

impl<F> HandleSide<F::Output> for Task<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn completion(&self) -> &Completion<F::Output> {
        &self.completion
    }

    fn job(self: Arc<Self>) -> SharedTask {
        self
    }
}

impl<T: Send + 'static> TaskHandle<T> {
    pub(crate) fn new(task: Arc<dyn HandleSide<T>>, pool: Arc<Inner>) -> TaskHandle<T> {
        TaskHandle { task, pool }
    }

    /// Cancels the task. A queued task is removed at once and never runs; a running one
    /// is dropped at its next poll (at an `.await` point). Either way it ends as
    /// cancelled and is counted in `Snapshot::cancelled`. Aborting a finished task does
    /// nothing.
    ///
    /// See the [example on `TaskHandle`](TaskHandle#examples).
    pub fn abort(&self) {
        if self.task.completion().is_done() {
            return;
        }
        self.pool.abort(self.task.clone().job());
    }

    /// `true` once the task has an outcome (its result may already have been taken).
    ///
    /// The pool counts an outcome in its [snapshot](crate::Pool::snapshot) just before it
    /// hands it to the handle: once `is_finished` is `true` (or the handle resolved), the
    /// snapshot counts the task; a snapshot may count it an instant before `is_finished`
    /// turns `true`.
    ///
    /// See the [example on `TaskHandle`](TaskHandle#examples).
    pub fn is_finished(&self) -> bool {
        self.task.completion().is_done()
    }
}

impl<T> Future for TaskHandle<T> {
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.task.completion().poll_result(cx)
    }
}

impl<T> fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("finished", &self.task.completion().is_done())
            .finish_non_exhaustive()
    }
}
