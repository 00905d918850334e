//! The response body: the inner service's body holding the request's permit until it ends,
//! or the (small, in-memory) body of an overload response.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use surgepool::limit::Permit;

use crate::classify::Outcome;
use crate::reaper::Key;
use crate::shared::{release, Shared};

pin_project! {
    /// The body of a response that went through an [`Admission`](crate::Admission) service.
    ///
    /// For an admitted request it is the inner service's body, and it **holds the request's
    /// permit until the body ends**, for at most
    /// [`body_timeout`](crate::AdmissionLayerBuilder::body_timeout): a streaming response
    /// counts against the limit for as long as it streams, and its latency sample covers the
    /// whole body. When the body outlives `body_timeout` (a client that stopped reading, a
    /// stream that never ends), the layer releases the permit as a drop and counts it in
    /// [`body_timeouts`](crate::AdmissionStats::body_timeouts), whether or not anything polls
    /// the body; the body itself goes on, no longer counted against the limit.
    ///
    /// The body ends when it yields its trailers, returns `None`, or yields a frame after
    /// which it reports `is_end_stream()` (hyper stops polling such a body, so that frame is
    /// its end; an empty body releases the permit when the head is answered). The outcome
    /// is the classifier's verdict on the head, revised by the trailers if any; a body error
    /// or panic counts as a drop. A body dropped before its end (the client went away, or a `HEAD` request
    /// whose body the server never reads) releases its permit without a latency sample,
    /// since a half-sent body says nothing reliable about the server's speed.
    ///
    /// For a shed request it is the overload response's body. See the
    /// [example on `Admission`](crate::Admission#examples).
    pub struct AdmissionBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner {
            #[pin]
            body: B,
            guard: Option<BodyGuard>,
        },
        Overload {
            data: Option<Bytes>,
        },
    }
}

/// The permit of a request whose body is still streaming: parked with the layer's reaper,
/// which releases it when `body_timeout` runs out, or held here when there is no bound.
pub(crate) struct BodyGuard {
    permit: Option<Permit>,
    parked: Option<Key>,
    /// The head's outcome, used when the body ends without trailers.
    outcome: Outcome,
    shared: Arc<Shared>,
}

impl BodyGuard {
    pub(crate) fn new(permit: Permit, outcome: Outcome, shared: &Arc<Shared>) -> BodyGuard {
        let (permit, parked) = match shared.bodies.park(shared, permit) {
            Ok(key) => (None, Some(key)),
            Err(permit) => (Some(permit), None),
        };
        BodyGuard {
            permit,
            parked,
            outcome,
            shared: shared.clone(),
        }
    }

    /// The permit, unless the reaper released it already (the body outlived its time).
    fn take_permit(&mut self) -> Option<Permit> {
        match self.parked.take() {
            Some(key) => self.shared.bodies.take(key),
            None => self.permit.take(),
        }
    }

    fn finish(mut self, outcome: Outcome) {
        if let Some(permit) = self.take_permit() {
            release(permit, outcome);
        }
    }
}

impl Drop for BodyGuard {
    fn drop(&mut self) {
        // Only reached with a permit when the body is dropped before its end: no sample,
        // unless the body's own code panicked, which is a failure like any other.
        if let Some(permit) = self.take_permit() {
            if std::thread::panicking() {
                permit.dropped();
            } else {
                permit.ignore();
            }
        }
    }
}

/// Releases the body's permit as a drop if the body's code panics while polled.
struct UnwindGuard<'a>(&'a mut Option<BodyGuard>);

impl Drop for UnwindGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(g) = self.0.take() {
                g.finish(Outcome::Dropped);
            }
        }
    }
}

impl<B> AdmissionBody<B> {
    /// The inner body; `guard` is `None` when the permit was already released.
    pub(crate) fn inner(body: B, guard: Option<BodyGuard>) -> AdmissionBody<B> {
        AdmissionBody {
            kind: Kind::Inner { body, guard },
        }
    }

    /// The body of an overload response.
    pub(crate) fn overload(data: Bytes) -> AdmissionBody<B> {
        let data = (!data.is_empty()).then_some(data);
        AdmissionBody {
            kind: Kind::Overload { data },
        }
    }

    /// `true` when this is the body of a response the layer made for a shed request.
    ///
    /// See the [example on `Admission`](crate::Admission#examples).
    pub fn is_overload(&self) -> bool {
        matches!(self.kind, Kind::Overload { .. })
    }
}

impl<B> Body for AdmissionBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { mut body, guard } => {
                // A body whose code panics failed like any request: its permit goes back as a
                // drop during the unwind (the body itself may live on, e.g. in a task that
                // tokio drops only after catching the panic, when nothing is panicking).
                let unwind = UnwindGuard(guard);
                let frame = ready!(body.as_mut().poll_frame(cx));
                let guard = &mut *unwind.0;
                match &frame {
                    None => {
                        if let Some(g) = guard.take() {
                            let outcome = g.outcome;
                            g.finish(outcome);
                        }
                    }
                    Some(Ok(frame)) => {
                        if let Some(trailers) = frame.trailers_ref() {
                            if let Some(g) = guard.take() {
                                let outcome = g
                                    .shared
                                    .classifier
                                    .0
                                    .classify_trailers(trailers)
                                    .unwrap_or(g.outcome);
                                g.finish(outcome);
                            }
                        } else if body.is_end_stream() {
                            // The last data frame: servers (hyper among them) stop polling a
                            // body that says it is over, so this is its end.
                            if let Some(g) = guard.take() {
                                let outcome = g.outcome;
                                g.finish(outcome);
                            }
                        }
                    }
                    Some(Err(_)) => {
                        if let Some(g) = guard.take() {
                            g.finish(Outcome::Dropped);
                        }
                    }
                }
                Poll::Ready(frame)
            }
            KindProj::Overload { data } => {
                Poll::Ready(data.take().map(|d| Ok(Frame::data(B::Data::from(d)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body, .. } => body.is_end_stream(),
            Kind::Overload { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body, .. } => body.size_hint(),
            Kind::Overload { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for AdmissionBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { body, guard } => f
                .debug_struct("AdmissionBody")
                .field("body", body)
                .field("holds_permit", &guard.is_some())
                .finish(),
            Kind::Overload { data } => f
                .debug_struct("AdmissionBody")
                .field("overload", data)
                .finish(),
        }
    }
}
