//! One closure of the blocking pool. A closure with a handle lives, with its outcome slot,
//! in a single allocation shared by the thread that runs it and the [`BlockingHandle`] that
//! waits for it. A detached closure (`try_spawn`) has no handle and no outcome slot: it is
//! stored inline in the job itself, so admitting it allocates nothing.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use smallbox::space::S8;
use smallbox::{smallbox, SmallBox};

use crate::accounting::Outcome;
use crate::completion::Completion;
use crate::error::{drop_payload, TaskError};
use crate::pool::PanicHook;
use crate::sync::{lock, Arc, Mutex};

/// What a worker thread holds: a type-erased closure, with or without a handle.
pub(crate) enum BlockingJob {
    /// Submitted with `try_submit` and friends: a [`BlockingHandle`] shares it.
    Shared(Arc<dyn RawClosure>),
    /// Submitted with `try_spawn` or `spawn_timeout`: nobody waits for it.
    Detached(Detached),
}

impl BlockingJob {
    /// Runs the closure with panics caught (the hook sees a panic first).
    pub(crate) fn run(&mut self, hook: Option<&PanicHook>) -> Outcome {
        match self {
            BlockingJob::Shared(closure) => closure.run(hook),
            BlockingJob::Detached(detached) => detached.run(hook),
        }
    }

    /// Hands the stored outcome to the handle, after the pool counted it.
    pub(crate) fn publish(&self) {
        match self {
            BlockingJob::Shared(closure) => closure.publish(),
            // Nobody waits for it.
            BlockingJob::Detached(_) => {}
        }
    }

    /// Ends a closure that never ran (shed, or cancelled while queued).
    pub(crate) fn finish_unrun(self, error: TaskError) {
        match self {
            BlockingJob::Shared(closure) => closure.finish_unrun(error),
            // Nobody to tell; the closure and its captures just go.
            BlockingJob::Detached(detached) => detached.discard(),
        }
    }
}

/// Inline room for a detached closure: 8 words (64 bytes on 64-bit targets), aligned to a
/// word. The job (and so every queue entry) is that much larger; in exchange a small
/// closure costs no allocation. `try_spawn`'s documentation states the bound.
type InlineSpace = S8;

/// A fire-and-forget closure, stored inline when it fits in [`InlineSpace`].
pub(crate) struct Detached {
    /// `FnOnce` cannot be called through `dyn` by value, so the closure sits in an
    /// `Option` behind an `FnMut` that takes it out on the first (and only) call.
    f: SmallBox<dyn FnMut() + Send, InlineSpace>,
}

impl Detached {
    pub(crate) fn new<F>(f: F) -> Detached
    where
        F: FnOnce() + Send + 'static,
    {
        let mut f = Some(f);
        Detached {
            // SAFETY (the macro's `unsafe { SmallBox::new_unchecked(val, ptr) }`): `ptr` is
            // the address of the closure itself, taken by the macro, so the `dyn FnMut`
            // metadata is this closure's; smallbox stores it inline only when its size and
            // alignment fit `InlineSpace`, else on the heap. The closure is never pinned
            // (it is called through `&mut`), so moving the box is fine. Watched under ASan by
            // this file's unit tests (inline and heap cases), `tests/blocking_spawn.rs`,
            // `tests/blocking_spawn_allocs.rs` and the `blocking_ops` fuzz target.
            f: smallbox!(move || {
                if let Some(f) = f.take() {
                    f();
                }
            }),
        }
    }

    /// `true` when the closure did not fit inline and took an allocation.
    #[cfg(test)]
    fn is_heap(&self) -> bool {
        self.f.is_heap()
    }

    fn run(&mut self, hook: Option<&PanicHook>) -> Outcome {
        // The closure is moved out and called by value inside `catch_unwind`, so its
        // captures are dropped in there too: a panicking destructor counts as its panic.
        match catch_unwind(AssertUnwindSafe(|| (self.f)())) {
            Ok(()) => Outcome::Completed,
            Err(payload) => {
                // As for a closure with a handle; with no hook, no `TaskError` is built (but
                // the payload is still a user value whose `Drop` may panic).
                match hook {
                    Some(hook) => {
                        let error = TaskError::panic(payload);
                        let _ = catch_unwind(AssertUnwindSafe(|| hook(&error)));
                    }
                    None => drop_payload(payload),
                }
                Outcome::Panicked
            }
        }
    }

    fn discard(self) {
        // The closure's captures may panic on drop; that must not reach the pool.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(self)));
    }
}

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

impl<F, T> Drop for Closure<F, T> {
    /// The last owner (the thread, the handle, or a queue that ends the closure) drops the
    /// closure or the output nobody took. Both are user values: a panic in their `Drop` is
    /// caught here, so that it never kills a worker thread (and leaks its slot) nor lands in
    /// whoever dropped the handle.
    fn drop(&mut self) {
        let stage = match self.stage.get_mut() {
            Ok(stage) => stage,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Assigning stores `Done` even when the old value's destructor panics.
        let _ = catch_unwind(AssertUnwindSafe(|| *stage = Stage::Done));
        self.completion.drop_unclaimed();
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
    ///
    /// See the [example on `BlockingHandle`](BlockingHandle#examples).
    pub fn join(self) -> Result<T, TaskError> {
        self.completion.completion().join()
    }

    /// `true` once the closure has an outcome.
    ///
    /// The pool counts an outcome in its [snapshot](crate::BlockingPool::snapshot) just
    /// before it hands it to the handle: once `is_finished` is `true` (or `join` returned),
    /// the snapshot counts the closure; a snapshot may count it an instant before
    /// `is_finished` turns `true`.
    ///
    /// See the [example on `BlockingHandle`](BlockingHandle#examples).
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The inline bound `try_spawn` documents: the closure plus the `Option` around it
    /// must fit in 8 words. A closure with a niche (a reference, `Arc`, `Box`, ...) needs no
    /// extra byte for the `Option`.
    #[test]
    fn small_closures_are_stored_inline_and_large_ones_spill() {
        let words = [1usize; 7];
        assert!(!Detached::new(move || {
            std::hint::black_box(words);
        })
        .is_heap());
        let with_niche = (Arc::new(()), [1usize; 7]);
        assert!(!Detached::new(move || {
            std::hint::black_box(with_niche);
        })
        .is_heap());
        assert!(!Detached::new(|| {}).is_heap());
        let no_niche = [1usize; 8];
        assert!(Detached::new(move || {
            std::hint::black_box(no_niche);
        })
        .is_heap());
        let big = [1usize; 9];
        assert!(Detached::new(move || {
            std::hint::black_box(big);
        })
        .is_heap());
        let aligned = 1u128;
        if std::mem::align_of::<u128>() > std::mem::align_of::<usize>() {
            assert!(Detached::new(move || {
                std::hint::black_box(aligned);
            })
            .is_heap());
        }
    }

    #[test]
    fn a_detached_closure_runs_once() {
        // `std`'s atomic, not `crate::sync`'s: this runs outside any loom model.
        use std::sync::atomic::{AtomicUsize, Ordering};
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = ran.clone();
        let mut job = BlockingJob::Detached(Detached::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        }));
        assert_eq!(job.run(None), Outcome::Completed);
        // A second call finds the `Option` empty (the pool never makes one).
        assert_eq!(job.run(None), Outcome::Completed);
        job.publish();
        assert_eq!(ran.load(Ordering::Relaxed), 1);
    }
}
