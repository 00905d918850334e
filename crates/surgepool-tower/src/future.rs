//! The response future: waits for a permit if the request was queued, drives the inner
//! service's readiness and call under the deadline, and hands the permit to the body.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;
use surgepool::limit::Permit;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::body::{AdmissionBody, BodyGuard};
use crate::classify::Outcome;
use crate::response::Reason;
use crate::shared::{release, Left, QueueSlot, Shared};

type AcquireFuture = Pin<Box<dyn Future<Output = Permit> + Send>>;

pin_project! {
    /// Response future of [`Admission`](crate::Admission) (see the
    /// [example there](crate::Admission#examples)).
    ///
    /// # Cancel safety
    ///
    /// Dropping it gives back whatever it holds: its place in the queue (the request counts
    /// as [`cancelled`](crate::AdmissionStats::cancelled)), or its permit, which then counts
    /// as **dropped** (an abandoned request is an overload signal, so an adaptive limit
    /// backs off).
    ///
    /// # Panics
    ///
    /// If the inner service panics in `poll_ready`, `call` or its future, the permit is
    /// released as dropped during the unwind and the panic goes on.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req, S::Future>,
        // Covers the queue wait and the inner call up to the response head: when it passes
        // (read when the request arrived). Its timer is armed only when the request first
        // has to wait: one answered on its first poll (a cache hit, a static answer) never
        // touches the timer wheel.
        due: Option<Instant>,
        #[pin]
        deadline: Option<Sleep>,
        shared: Arc<Shared>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, F> {
        // Waiting in the bounded queue for a permit.
        Queued {
            acquire: AcquireFuture,
            slot: Option<QueueSlot>,
            svc: Option<S>,
            req: Option<Req>,
        },
        // Admitted; waiting for the inner service to be ready.
        Ready {
            svc: S,
            req: Option<Req>,
            permit: Option<Permit>,
        },
        // Admitted; the inner service is working on it.
        Calling {
            #[pin]
            fut: F,
            permit: Option<Permit>,
        },
        // Answered by the layer.
        Shed {
            reason: Reason,
        },
        Done,
    }
}

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    fn new(state: State<S, Req, S::Future>, shared: Arc<Shared>) -> Self {
        let due = match state {
            State::Shed { .. } => None,
            // A deadline past the end of the clock (`Duration::MAX`) can never pass.
            _ => shared.deadline.and_then(|d| Instant::now().checked_add(d)),
        };
        ResponseFuture {
            state,
            due,
            deadline: None,
            shared,
        }
    }

    pub(crate) fn admitted(svc: S, req: Req, permit: Permit, shared: Arc<Shared>) -> Self {
        let state = State::Ready {
            svc,
            req: Some(req),
            permit: Some(permit),
        };
        ResponseFuture::new(state, shared)
    }

    /// Admitted, and the inner service already called.
    pub(crate) fn calling(fut: S::Future, permit: Permit, shared: Arc<Shared>) -> Self {
        let state = State::Calling {
            fut,
            permit: Some(permit),
        };
        ResponseFuture::new(state, shared)
    }

    pub(crate) fn queued(svc: S, req: Req, slot: QueueSlot, shared: Arc<Shared>) -> Self {
        let limiter = shared.limiter.clone();
        let state = State::Queued {
            acquire: Box::pin(async move { limiter.acquire().await }),
            slot: Some(slot),
            svc: Some(svc),
            req: Some(req),
        };
        ResponseFuture::new(state, shared)
    }

    pub(crate) fn shed(reason: Reason, shared: Arc<Shared>) -> Self {
        ResponseFuture::new(State::Shed { reason }, shared)
    }
}

enum Step<S, Req, F, O> {
    Next(State<S, Req, F>),
    Return(O),
}

impl<S, Req, B> Future for ResponseFuture<S, Req>
where
    S: Service<Req, Response = Response<B>>,
    B: Body,
{
    type Output = Result<Response<AdmissionBody<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let step = match this.state.as_mut().project() {
                StateProj::Queued {
                    acquire,
                    slot,
                    svc,
                    req,
                } => match acquire.as_mut().poll(cx) {
                    Poll::Ready(permit) => {
                        if let Some(slot) = slot.take() {
                            slot.leave(Left::Admitted);
                        }
                        Step::Next(State::Ready {
                            svc: svc.take().expect("queued state holds the service"),
                            req: req.take(),
                            permit: Some(permit),
                        })
                    }
                    Poll::Pending => {
                        if !expired(*this.due, this.deadline.as_mut(), cx) {
                            return Poll::Pending;
                        }
                        if let Some(slot) = slot.take() {
                            slot.leave(Left::TimedOut);
                        }
                        Step::Next(State::Shed {
                            reason: Reason::QueueTimeout,
                        })
                    }
                },
                StateProj::Ready { svc, req, permit } => {
                    let guard = UnwindGuard(permit);
                    match svc.poll_ready(cx) {
                        Poll::Ready(Ok(())) => {
                            let fut = svc.call(req.take().expect("ready state holds the request"));
                            Step::Next(State::Calling {
                                fut,
                                permit: guard.take(),
                            })
                        }
                        Poll::Ready(Err(err)) => {
                            release_opt(guard.take(), Outcome::Dropped);
                            Step::Return(Err(err))
                        }
                        Poll::Pending => {
                            if !expired(*this.due, this.deadline.as_mut(), cx) {
                                return Poll::Pending;
                            }
                            release_opt(guard.take(), Outcome::Dropped);
                            this.shared.count_shed(Reason::Timeout);
                            Step::Next(State::Shed {
                                reason: Reason::Timeout,
                            })
                        }
                    }
                }
                StateProj::Calling { fut, permit } => {
                    let guard = UnwindGuard(permit);
                    match fut.poll(cx) {
                        Poll::Ready(Ok(response)) => {
                            Step::Return(Ok(admitted_response(response, guard.take(), this.shared)))
                        }
                        Poll::Ready(Err(err)) => {
                            release_opt(guard.take(), Outcome::Dropped);
                            Step::Return(Err(err))
                        }
                        Poll::Pending => {
                            if !expired(*this.due, this.deadline.as_mut(), cx) {
                                return Poll::Pending;
                            }
                            release_opt(guard.take(), Outcome::Dropped);
                            this.shared.count_shed(Reason::Timeout);
                            // Setting the next state drops (cancels) the inner future.
                            Step::Next(State::Shed {
                                reason: Reason::Timeout,
                            })
                        }
                    }
                }
                StateProj::Shed { reason } => Step::Return(Ok(shed_response(*reason, this.shared))),
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            };
            match step {
                Step::Next(state) => this.state.set(state),
                Step::Return(output) => {
                    this.state.set(State::Done);
                    this.deadline.set(None);
                    return Poll::Ready(output);
                }
            }
        }
    }
}

/// `true` once the deadline `due` (if any) has passed; arms its timer on the first call and
/// registers the waker otherwise.
fn expired(
    due: Option<Instant>,
    mut deadline: Pin<&mut Option<Sleep>>,
    cx: &mut Context<'_>,
) -> bool {
    let Some(due) = due else {
        return false;
    };
    if deadline.is_none() {
        deadline.set(Some(tokio::time::sleep_until(due)));
    }
    deadline
        .as_pin_mut()
        .is_some_and(|sleep| sleep.poll(cx).is_ready())
}

fn release_opt(permit: Option<Permit>, outcome: Outcome) {
    if let Some(permit) = permit {
        release(permit, outcome);
    }
}

/// Releases the permit as dropped if the inner service panics while it is borrowed.
struct UnwindGuard<'a>(&'a mut Option<Permit>);

impl UnwindGuard<'_> {
    fn take(self) -> Option<Permit> {
        self.0.take()
    }
}

impl Drop for UnwindGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            release_opt(self.0.take(), Outcome::Dropped);
        }
    }
}

/// Classifies the head; the permit goes with the body unless the body is already over.
fn admitted_response<B: Body>(
    response: Response<B>,
    permit: Option<Permit>,
    shared: &Arc<Shared>,
) -> Response<AdmissionBody<B>> {
    let outcome = shared
        .classifier
        .0
        .classify_head(response.status(), response.headers());
    let (parts, body) = response.into_parts();
    let guard = match permit {
        Some(permit) if body.is_end_stream() => {
            release(permit, outcome);
            None
        }
        Some(permit) => Some(BodyGuard::new(permit, outcome, shared)),
        None => None,
    };
    Response::from_parts(parts, AdmissionBody::inner(body, guard))
}

fn shed_response<B>(reason: Reason, shared: &Shared) -> Response<AdmissionBody<B>> {
    let (mut parts, data) = shared.overload.make(reason).into_parts();
    parts.extensions.insert(reason);
    Response::from_parts(parts, AdmissionBody::overload(data))
}

impl<S, Req> fmt::Debug for ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Queued { .. } => "queued",
            State::Ready { .. } => "admitted, inner service not ready",
            State::Calling { .. } => "admitted, calling",
            State::Shed { .. } => "shed",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
