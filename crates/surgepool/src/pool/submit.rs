//! `submit` and `submit_timeout`: wait in a FIFO line for room, cancel-safely.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use tokio::time::{Instant, Sleep};

use super::inner::{Inner, JobOptions, Line, Refusal};
use super::job::Job;
use crate::error::SubmitError;
use crate::sync::Arc;

/// Leaves the line when the wait ends for any reason, including being dropped.
struct Place<'a> {
    inner: &'a Arc<Inner>,
    id: Option<u64>,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.inner.unpark_waiter(id);
        }
    }
}

/// Waits in line until `fut` is admitted (made into a job by `make`, as in
/// [`Inner::try_admit`]), the pool closes, or `deadline` passes.
pub(crate) async fn wait<F, R>(
    inner: &Arc<Inner>,
    fut: F,
    make: impl FnOnce(F) -> (Job, R) + Copy,
    deadline: Option<Instant>,
) -> Result<R, SubmitError<F>> {
    let mut place = Place { inner, id: None };
    let mut job = Some(fut);
    let mut timer: Option<Pin<Box<Sleep>>> =
        deadline.map(|d| Box::pin(tokio::time::sleep_until(d)));
    poll_fn(|cx| {
        let Some(fut) = job.take() else {
            // Polled after completion: nothing left to submit.
            return Poll::Pending;
        };
        let line = Line {
            id: place.id,
            waker: cx.waker(),
        };
        match inner.try_admit(fut, make, JobOptions::default(), Some(line)) {
            Ok(made) => {
                // `try_admit` took us out of the line.
                place.id = None;
                return Poll::Ready(Ok(made));
            }
            Err((fut, Refusal::Closed)) => return Poll::Ready(Err(SubmitError::Closed(fut))),
            Err((fut, Refusal::InLine(id))) => {
                place.id = Some(id);
                job = Some(fut);
            }
            Err((fut, Refusal::Full)) => job = Some(fut),
        }
        if let Some(timer) = timer.as_mut() {
            if timer.as_mut().poll(cx).is_ready() {
                inner.count_rejection();
                let fut = job.take().expect("the job was put back above");
                return Poll::Ready(Err(SubmitError::Timeout(fut)));
            }
        }
        // In the line, with our waker: whoever makes room wakes the head of the line.
        Poll::Pending
    })
    .await
}
