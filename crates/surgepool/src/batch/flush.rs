//! One flush task: calls the user's flush with panics caught, checks the output count, and
//! bisects a failed batch until its failing items stand alone.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::error::{BatchError, FlushError};
use super::inner::{drop_quietly, CallEnd, FlushFuture, Inner, Start};
use super::OnFailure;
use crate::sync::Arc;

type Panic = Box<dyn std::any::Any + Send>;

/// Cancels what is left of the flush if the task is dropped before it ends (aborted at a
/// shutdown deadline, or dropped by a runtime that shut down).
/// Made before the task is spawned and moved into it, so a task dropped before its first
/// poll (its runtime is gone) still cancels its items.
pub(crate) struct EndGuard<T: Send + 'static, R: Send + 'static> {
    pub(crate) inner: Arc<Inner<T, R>>,
    pub(crate) id: u64,
}

impl<T: Send + 'static, R: Send + 'static> Drop for EndGuard<T, R> {
    fn drop(&mut self) {
        self.inner.end_flush(self.id);
    }
}

/// Runs one batch to its end. The permit is held across bisection retries, so a failing
/// batch never takes more than its one share of the limit.
pub(crate) async fn run<T: Send + 'static, R: Send + 'static>(
    guard: EndGuard<T, R>,
    start: Start<T>,
) {
    let Start { id, items, permit } = start;
    let inner = guard.inner.clone();
    let bisect = match inner.settings.on_failure {
        OnFailure::Bisect => inner.cloner,
        OnFailure::FailBatch => None,
    };
    // Work is a stack of (offset in the batch, items); halves are pushed right then left,
    // so items commit in their order of arrival.
    let mut work = vec![(0usize, items)];
    let mut first: Option<(bool, Duration)> = None;
    while let Some((offset, items)) = work.pop() {
        let n = items.len();
        let retry: Option<Vec<T>> = match bisect {
            Some(clone) if n > 1 => Some(items.iter().map(clone).collect()),
            _ => None,
        };
        let started = inner.clock.now();
        let result = call(&inner, items).await;
        let took = inner.clock.now().nanos_since(started);
        first.get_or_insert((
            matches!(result, Ok(Ok(ref o)) if o.len() == n),
            Duration::from_nanos(took),
        ));
        let end = match result {
            Ok(Ok(outputs)) if outputs.len() == n => {
                drop_quietly(retry);
                CallEnd::Committed(outputs)
            }
            Ok(Ok(outputs)) => {
                // A contract bug in the flush, not a poison item: retrying cannot help.
                let error = BatchError::output_count(n, outputs.len());
                drop_quietly(outputs);
                drop_quietly(retry);
                CallEnd::Failed(error)
            }
            Ok(Err(error)) => match retry {
                Some(mut left) => {
                    let right = left.split_off(n / 2);
                    work.push((offset + n / 2, right));
                    work.push((offset, left));
                    drop_quietly(error);
                    CallEnd::Bisected
                }
                None => CallEnd::Failed(BatchError::flush(error)),
            },
            Err(panic) => {
                let error = BatchError::panic(&*panic);
                drop_quietly(panic);
                drop_quietly(retry);
                CallEnd::Failed(error)
            }
        };
        inner.finish_call(id, offset, n, took, end);
    }
    // The limit learns from the first call only: it is the flush the batch size asked for,
    // and retries of halves would read as the flush getting faster.
    match first {
        Some((true, latency)) => permit.success_with_latency(latency),
        _ => permit.ignore(),
    }
    drop(guard);
    inner.pump();
}

/// Calls the flush with every panic caught: in the call itself, while polling the future,
/// and while dropping it.
async fn call<T: Send + 'static, R: Send + 'static>(
    inner: &Inner<T, R>,
    items: Vec<T>,
) -> Result<Result<Vec<R>, FlushError>, Panic> {
    let future = catch_unwind(AssertUnwindSafe(|| (inner.flush)(items)))?;
    CatchUnwind(Some(future)).await
}

struct CatchUnwind<R>(Option<FlushFuture<R>>);

impl<R> Future for CatchUnwind<R> {
    type Output = Result<Result<Vec<R>, FlushError>, Panic>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(future) = self.0.as_mut() else {
            return Poll::Pending;
        };
        let poll = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx)));
        match poll {
            Ok(Poll::Pending) => Poll::Pending,
            done => {
                drop_quietly(self.0.take());
                match done {
                    Ok(Poll::Ready(result)) => Poll::Ready(Ok(result)),
                    Ok(Poll::Pending) => Poll::Pending,
                    Err(panic) => Poll::Ready(Err(panic)),
                }
            }
        }
    }
}

impl<R> Drop for CatchUnwind<R> {
    fn drop(&mut self) {
        drop_quietly(self.0.take());
    }
}
