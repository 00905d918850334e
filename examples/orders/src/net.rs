//! The accept loop every listener shares (public, admin, upstream): hyper's HTTP/1 server with
//! a header-read timeout, an idle timeout, a small header buffer, the peer address as
//! `ConnectInfo`, and a graceful shutdown bounded by a drain timeout — axum's `serve` has
//! neither the timeouts nor a drain bound, so the loop is written out here.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// hyper's smallest read buffer is 8 KiB; 16 KiB holds any sane request head, and a client
/// sending 64 KiB of headers gets 431 and a closed connection instead of our memory.
///
/// The number of headers keeps hyper's bound (100, also 431 beyond it): setting a bound of
/// our own makes hyper initialise a header array for every request, 5 % of a hello's
/// instructions (callgrind), where its default array stays uninitialised.
const MAX_BUF: usize = 16 * 1024;

/// How a listener treats its connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// A request head must arrive whole within this (slowloris).
    pub(crate) header_read: Duration,
    /// A connection with no byte read or written for this long is closed (idle keep-alive,
    /// and a client that stops reading its answer).
    pub(crate) idle: Duration,
}

/// Serves `service` on `listener` until `shutdown` resolves, then stops accepting and waits
/// up to `drain` for open connections to finish their in-flight requests. Returns `true` when
/// every connection finished in time; connections still open are dropped by the caller's
/// runtime shutdown.
pub(crate) async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> bool
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let builder = http1(limits.header_read);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // EMFILE and friends: back off briefly rather than spin.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let svc = service
            .clone()
            .map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let io = TokioIo::new(IdleIo::new(stream, limits.idle));
        let conn = builder.serve_connection(io, ConnService::new(svc));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%err, %peer, "connection closed with an error");
            }
        });
    }
    drop(listener);
    tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_ok()
}

/// hyper's `Service` over a tower service, one per connection.
///
/// hyper-util's `TowerToHyperService` clones the whole tower stack for every request (hyper
/// calls `&self`, tower wants `&mut self`); here that is a dozen layers, each clone an atomic
/// increment on a counter every connection shares. HTTP/1 serves a connection's requests one
/// at a time, so the connection owns its stack and calls it in place; only when the stack is
/// not ready at once does a request get a clone of its own, driven to readiness by `oneshot`.
pub(crate) struct ConnService<S>(std::sync::Mutex<S>);

impl<S> ConnService<S> {
    pub(crate) fn new(service: S) -> Self {
        ConnService(std::sync::Mutex::new(service))
    }
}

impl<S, R> hyper::service::Service<R> for ConnService<S>
where
    S: tower::Service<R> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures_util::future::Either<S::Future, tower::util::Oneshot<S, R>>;

    fn call(&self, req: R) -> Self::Future {
        use futures_util::future::Either;
        // Never contended: hyper calls a connection's service from that connection's task.
        let mut service = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match service.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => Either::Left(service.call(req)),
            // Not ready (or failed): this request waits on (or reports) its own clone's
            // readiness, with a real waker.
            _ => Either::Right(service.clone().oneshot(req)),
        }
    }
}

/// hyper's HTTP/1 server as every listener configures it.
pub(crate) fn http1(header_read: Duration) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read)
        .max_buf_size(MAX_BUF);
    builder
}

/// Binds `addr` and prints `{label} http://ADDR` once bound (tests and scripts parse it).
pub(crate) async fn bind(addr: SocketAddr, label: &str) -> anyhow::Result<TcpListener> {
    use anyhow::Context as _;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local: SocketAddr = listener.local_addr()?;
    println!("{label} http://{local}");
    Ok(listener)
}

pin_project! {
    #[project = IdleIoProj]
    /// A `TcpStream` that fails with `TimedOut` once no byte has moved for `idle`.
    ///
    /// The clock is coarse on purpose: a byte that moves only sets a flag, and a timer that
    /// ticks every `idle / IDLE_TICKS` checks it. Resetting a timer on every read and write
    /// costs a clock read and a timer-wheel move per call, a few percent of a small request's
    /// CPU. So a silent connection is closed after between `idle` and `idle × (1 + 1/IDLE_TICKS)`.
    struct IdleIo {
        #[pin]
        inner: TcpStream,
        tick: Pin<Box<Sleep>>,
        period: Duration,
        // A byte moved since the last tick.
        moved: bool,
        // Ticks in a row with no byte moved.
        quiet: u32,
    }
}

/// Ticks per idle timeout (see [`IdleIo`]).
const IDLE_TICKS: u32 = 4;

impl IdleIo {
    fn new(inner: TcpStream, idle: Duration) -> Self {
        let period = (idle / IDLE_TICKS).max(Duration::from_millis(1));
        IdleIo {
            inner,
            tick: Box::pin(tokio::time::sleep(period)),
            period,
            moved: false,
            quiet: 0,
        }
    }
}

/// Polled when an I/O call is pending: `Ready` once `IDLE_TICKS` ticks in a row saw no byte.
fn check_idle(
    tick: &mut Pin<Box<Sleep>>,
    period: Duration,
    moved: &mut bool,
    quiet: &mut u32,
    cx: &mut Context<'_>,
) -> Poll<io::Error> {
    loop {
        ready!(tick.as_mut().poll(cx));
        if std::mem::take(moved) {
            *quiet = 0;
        } else {
            *quiet = quiet.saturating_add(1);
            if *quiet >= IDLE_TICKS {
                return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "connection idle"));
            }
        }
        // From now, not from the missed deadline: a connection busy for an hour does not
        // spin through its missed ticks.
        tick.as_mut().reset(Instant::now() + period);
    }
}

impl IdleIo {
    /// An I/O call's result: a byte moved when it is ready; the idle check when it is pending.
    fn after<T>(
        this: IdleIoProj<'_>,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(result) => {
                *this.moved = true;
                Poll::Ready(result)
            }
            Poll::Pending => {
                check_idle(this.tick, *this.period, this.moved, this.quiet, cx).map(Err)
            }
        }
    }
}

impl AsyncRead for IdleIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut this = self.project();
        let result = this.inner.as_mut().poll_read(cx, buf);
        IdleIo::after(this, cx, result)
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut this = self.project();
        let result = this.inner.as_mut().poll_write(cx, buf);
        IdleIo::after(this, cx, result)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut this = self.project();
        let result = this.inner.as_mut().poll_write_vectored(cx, bufs);
        IdleIo::after(this, cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn pair(idle: Duration) -> (Pin<Box<IdleIo>>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Box::pin(IdleIo::new(server, idle)), client)
    }

    /// A silent connection fails after between `idle` and a quarter more; a byte that moves
    /// starts the count again.
    #[tokio::test(start_paused = true)]
    async fn idle_io_closes_after_idle_of_silence_and_not_before() {
        let idle = Duration::from_secs(4);
        let (mut io, mut client) = pair(idle).await;
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            client.write_all(b"x").await.unwrap();
            client
        });
        let mut buf = [0u8; 8];
        assert_eq!(io.read(&mut buf).await.unwrap(), 1, "open at 3 s of 4");
        let moved = Instant::now();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let quiet = moved.elapsed();
        assert!(
            quiet >= idle && quiet <= idle + idle / IDLE_TICKS,
            "closed after {quiet:?} of silence"
        );
        drop(writer.await.unwrap());
    }

    /// A service that is not ready at first: readiness alternates per clone, and the
    /// shared count says how many calls went through which copy.
    #[derive(Clone)]
    struct Flaky {
        ready: bool,
        fail: bool,
        calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Flaky {
        fn new(
            ready: bool,
            fail: bool,
            calls: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
        ) -> Flaky {
            Flaky {
                ready,
                fail,
                calls: calls.clone(),
            }
        }
    }

    impl tower::Service<u32> for Flaky {
        type Response = u32;
        type Error = &'static str;
        type Future = std::future::Ready<Result<u32, &'static str>>;

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
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::future::ready(Ok(req * 2))
        }
    }

    /// A ready stack is called in place; one that is not ready gets each request a clone
    /// driven to readiness; one whose readiness fails answers with that error.
    #[tokio::test]
    async fn conn_service_calls_in_place_and_waits_for_readiness_on_a_clone() {
        use hyper::service::Service as _;
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ready = ConnService::new(Flaky::new(true, false, &calls));
        assert_eq!(ready.call(1).await, Ok(2));
        assert_eq!(ready.call(2).await, Ok(4));
        let not_ready = ConnService::new(Flaky::new(false, false, &calls));
        // The first call finds the shared copy not ready (and makes it ready): a clone
        // serves it. The second finds it ready and calls it in place.
        assert_eq!(not_ready.call(3).await, Ok(6));
        assert_eq!(not_ready.call(4).await, Ok(8));
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 4);
        let broken = ConnService::new(Flaky::new(true, true, &calls));
        assert_eq!(broken.call(5).await, Err("broken"));
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 4);
    }

    /// A connection that keeps moving bytes stays open however long it lives.
    #[tokio::test(start_paused = true)]
    async fn idle_io_keeps_a_busy_connection() {
        let idle = Duration::from_secs(1);
        let (mut io, mut client) = pair(idle).await;
        let mut buf = [0u8; 8];
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(900)).await;
            client.write_all(b"y").await.unwrap();
            assert_eq!(io.read(&mut buf).await.unwrap(), 1);
        }
    }
}
