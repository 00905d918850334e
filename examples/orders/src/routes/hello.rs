//! `GET /api/hello`: a response serialised once, at compile time, and handed out as a
//! reference-counted-free static `Bytes` (seed 002 §3, §5): the handler allocates nothing.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderValue};

/// The body, built once.
pub(crate) static HELLO: Bytes = Bytes::from_static(br#"{"message":"Hello"}"#);

/// The handler.
pub(crate) async fn hello() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        HELLO.clone(),
    )
        .into_response()
}

#[cfg(test)]
pub(crate) mod tests {
    //! The hot path allocates nothing of its own: the body is a static `Bytes`, and the whole
    //! handler costs exactly what an empty response with the same header costs (the header
    //! map and axum's body box, which any handler pays).
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::future::Future;
    use std::task::{Context, Poll};

    use super::*;

    struct Counting;

    thread_local! {
        static ALLOCS: Cell<u64> = const { Cell::new(0) };
    }

    // SAFETY: forwards to the system allocator unchanged; only counts calls (per thread, so
    // other tests running at the same time do not disturb the count).
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
            System.alloc(layout)
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout)
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    /// Runs `f` and counts the allocations this thread made meanwhile.
    pub(crate) fn allocs<T>(f: impl FnOnce() -> T) -> (u64, T) {
        let before = ALLOCS.with(Cell::get);
        let out = f();
        (ALLOCS.with(Cell::get) - before, out)
    }

    fn run<F: Future>(fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("hello never waits"),
        }
    }

    #[test]
    fn hello_allocates_nothing_beyond_an_empty_response() {
        let (n, body) = allocs(|| HELLO.clone());
        assert_eq!(n, 0, "cloning the static body allocates");
        drop(body);
        let _ = run(hello()); // warm up thread-locals
        let (baseline, empty) = allocs(|| {
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                Bytes::new(),
            )
                .into_response()
        });
        let (handler, response) = allocs(|| run(hello()));
        assert_eq!(
            handler, baseline,
            "hello allocates more than an empty response"
        );
        drop((empty, response));
    }
}
