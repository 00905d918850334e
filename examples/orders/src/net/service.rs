//! hyper's `Service` over a tower service, one per connection; it tells the connection's
//! head clock ([`Heads`]) when a request begins and when its answer is over.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::ServiceExt;

use super::idle::Heads;

/// hyper's `Service` over a tower service, one per connection.
///
/// hyper-util's `TowerToHyperService` clones the whole tower stack for every request (hyper
/// calls `&self`, tower wants `&mut self`); here that is a dozen layers, each clone an atomic
/// increment on a counter every connection shares. HTTP/1 serves a connection's requests one
/// at a time, so the connection owns its stack and calls it in place; only when the stack is
/// not ready at once does a request get a clone of its own, driven to readiness by `oneshot`.
pub(crate) struct ConnService<S> {
    service: std::sync::Mutex<S>,
    heads: Arc<Heads>,
}

impl<S> ConnService<S> {
    pub(crate) fn new(service: S, heads: Arc<Heads>) -> Self {
        ConnService {
            service: std::sync::Mutex::new(service),
            heads,
        }
    }
}

impl<S, R, B> hyper::service::Service<R> for ConnService<S>
where
    S: tower::Service<R, Response = Response<B>> + Clone,
{
    type Response = Response<Answer<B>>;
    type Error = S::Error;
    type Future = Answering<Either<S::Future, tower::util::Oneshot<S, R>>>;

    fn call(&self, req: R) -> Self::Future {
        self.heads.begin();
        let open = Open(self.heads.clone());
        // Never contended: hyper calls a connection's service from that connection's task.
        let mut service = self
            .service
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let inner = match service.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => Either::Left(service.call(req)),
            // Not ready (or failed): this request waits on (or reports) its own clone's
            // readiness, with a real waker.
            _ => Either::Right(service.clone().oneshot(req)),
        };
        Answering {
            inner,
            open: Some(open),
        }
    }
}

/// A request whose answer is not over; dropping it tells the head clock.
struct Open(Arc<Heads>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.end();
    }
}

pin_project! {
    /// The service's future; its response's body carries the request's [`Open`].
    pub(crate) struct Answering<F> {
        #[pin]
        inner: F,
        open: Option<Open>,
    }
}

impl<F, B, E> Future for Answering<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<Answer<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        // On an error the request is over here (hyper closes the connection).
        let open = this.open.take();
        Poll::Ready(result.map(|response| response.map(|body| Answer { body, _open: open })))
    }
}

pin_project! {
    /// A response body; the answer is over when hyper drops it (at its end, or with the
    /// connection).
    pub(crate) struct Answer<B> {
        #[pin]
        body: B,
        _open: Option<Open>,
    }
}

impl<B: Body> Body for Answer<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hyper::service::Service as _;

    use super::*;

    /// A service that is not ready at first: readiness alternates per clone, and the
    /// shared count says how many calls went through which copy.
    #[derive(Clone)]
    struct Flaky {
        ready: bool,
        fail: bool,
        calls: Arc<AtomicUsize>,
    }

    impl Flaky {
        fn new(ready: bool, fail: bool, calls: &Arc<AtomicUsize>) -> Flaky {
            Flaky {
                ready,
                fail,
                calls: calls.clone(),
            }
        }
    }

    impl tower::Service<u32> for Flaky {
        type Response = Response<String>;
        type Error = &'static str;
        type Future = std::future::Ready<Result<Response<String>, &'static str>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            if self.fail {
                return Poll::Ready(Err("broken"));
            }
            if self.ready {
                return Poll::Ready(Ok(()));
            }
            // Ready on the next poll, which must come from a real waker.
            self.ready = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }

        fn call(&mut self, req: u32) -> Self::Future {
            assert!(self.ready, "called before it said ready");
            self.calls.fetch_add(1, Ordering::Relaxed);
            std::future::ready(Ok(Response::new((req * 2).to_string())))
        }
    }

    async fn body(service: &ConnService<Flaky>, req: u32) -> Result<String, &'static str> {
        service
            .call(req)
            .await
            .map(|response| response.into_body().body)
    }

    /// A ready stack is called in place; one that is not ready gets each request a clone
    /// driven to readiness; one whose readiness fails answers with that error.
    #[tokio::test]
    async fn conn_service_calls_in_place_and_waits_for_readiness_on_a_clone() {
        let calls = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Heads::default());
        let ready = ConnService::new(Flaky::new(true, false, &calls), heads.clone());
        assert_eq!(body(&ready, 1).await.as_deref(), Ok("2"));
        assert_eq!(body(&ready, 2).await.as_deref(), Ok("4"));
        let not_ready = ConnService::new(Flaky::new(false, false, &calls), heads.clone());
        // The first call finds the shared copy not ready (and makes it ready): a clone
        // serves it. The second finds it ready and calls it in place.
        assert_eq!(body(&not_ready, 3).await.as_deref(), Ok("6"));
        assert_eq!(body(&not_ready, 4).await.as_deref(), Ok("8"));
        assert_eq!(calls.load(Ordering::Relaxed), 4);
        let broken = ConnService::new(Flaky::new(true, true, &calls), heads.clone());
        assert_eq!(body(&broken, 5).await, Err("broken"));
        assert_eq!(calls.load(Ordering::Relaxed), 4);
    }

    /// A request is open from its call until its answer's body is dropped, or until its
    /// future fails or is dropped unanswered.
    #[tokio::test]
    async fn a_request_is_open_until_its_body_is_dropped() {
        let calls = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Heads::default());
        let service = ConnService::new(Flaky::new(true, false, &calls), heads.clone());
        let future = service.call(1);
        assert_eq!(heads.open(), 1);
        let response = future.await.unwrap();
        assert_eq!(heads.open(), 1, "the body is still to be sent");
        drop(response);
        assert_eq!(heads.open(), 0);
        drop(service.call(2));
        assert_eq!(heads.open(), 0, "a dropped future");
        let broken = ConnService::new(Flaky::new(true, true, &calls), heads.clone());
        assert!(broken.call(3).await.is_err());
        assert_eq!(heads.open(), 0, "a failed one");
    }
}
