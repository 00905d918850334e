//! One closure of the blocking pool and its outcome slot, in a single allocation shared by
//! the thread that runs it and the [`BlockingHandle`] that waits for it.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::accounting::Outcome;
use crate::completion::Completion;
use crate::error::TaskError;
use crate::pool::PanicHook;
use crate::sync::{lock, Arc, Mutex};

/// What a worker thread holds: a type-erased closure.
pub(crate) type BlockingJob = Arc<dyn RawClosure>;

pub(crate) trait RawClosure: Send + Sync + 'static {
    /// Runs the closure with panics caught.
    fn run(&self, hook: Option<&PanicHook>) -> Outcome;
    /// Hands the stored outcome to the handle, after the pool counted it.
    fn publish(&self);
    /// Ends a closure that never ran (shed, or cancelled while queued).
    fn finish_unrun(&self, error: TaskError);
}

pub(crate) struct Closure<F, T> {
    stage: Mutex<Stage<F, T>>,
    completion: Completion<T>,
}

impl<F, T> Closure<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    pub(crate) fn new(f: F) -> Arc<Closure<F, T>> {
        Arc::new(Closure {
            stage: Mutex::new(Stage::Pending(f)),
            completion: Completion::new(),
        })
    }
}

impl<F, T> RawClosure for Closure<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn run(&self, hook: Option<&PanicHook>) -> Outcome {
        let Stage::Pending(f) = std::mem::replace(&mut *lock(&self.stage), Stage::Done) else {
            return Outcome::Cancelled;
        };
        let (result, outcome) = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(value) => (Ok(value), Outcome::Completed),
            Err(payload) => {
                let error = TaskError::panic(payload);
                if let Some(hook) = hook {
                    let _ = catch_unwind(AssertUnwindSafe(|| hook(&error)));
                }
                (Err(error), Outcome::Panicked)
            }
        };
        *lock(&self.stage) = Stage::Finished(result);
        outcome
    }

    fn publish(&self) {
        if let Stage::Finished(result) = std::mem::replace(&mut *lock(&self.stage), Stage::Done) {
            self.completion.complete(result);
        }
    }

    fn finish_unrun(&self, error: TaskError) {
        let f = std::mem::replace(&mut *lock(&self.stage), Stage::Done);
        // The closure's captures may panic on drop; that must not reach the pool.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(f)));
        self.completion.complete(Err(error));
    }
}

enum Stage<F, T> {
    Pending(F),
    Finished(Result<T, TaskError>),
    Done,
}

/// A handle to a closure submitted to a [`BlockingPool`](crate::BlockingPool).
///
/// [`join`](BlockingHandle::join) blocks the calling thread for the result; the handle is
/// also a `Future` for async callers. Dropping it detaches the closure: it still runs and
/// is counted.
///
/// # Examples
///
/// ```
/// use surgepool::BlockingPool;
///
/// let pool = BlockingPool::builder().build().unwrap();
/// let handle = pool.try_submit(|| (1..=10u64).product::<u64>()).unwrap();
/// assert_eq!(handle.join().unwrap(), 3_628_800);
/// ```
pub struct BlockingHandle<T> {
    completion: Arc<dyn CompletionOf<T>>,
}

pub(crate) trait CompletionOf<T>: Send + Sync {
    fn completion(&self) -> &Completion<T>;
}

impl<F, T> CompletionOf<T> for Closure<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn completion(&self) -> &Completion<T> {
        &self.completion
    }
}

impl<T> BlockingHandle<T> {
    pub(crate) fn new(completion: Arc<dyn CompletionOf<T>>) -> BlockingHandle<T> {
        BlockingHandle { completion }
    }

    /// Blocks the calling thread until the closure has an outcome.
    ///
    /// Do not call this on an async runtime's thread: await the handle instead.
    pub fn join(self) -> Result<T, TaskError> {
        self.completion.completion().join()
    }

    /// `true` once the closure has an outcome.
    pub fn is_finished(&self) -> bool {
        self.completion.completion().is_done()
    }
}

impl<T> Future for BlockingHandle<T> {
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.completion.completion().poll_result(cx)
    }
}

impl<T> fmt::Debug for BlockingHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingHandle")
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}
