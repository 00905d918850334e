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
use hyper_util::service::TowerToHyperService;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// hyper's smallest read buffer is 8 KiB; 16 KiB holds any sane request head, and a client
/// sending 64 KiB of headers gets 431 and a closed connection instead of our memory.
const MAX_BUF: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

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
        let conn = builder.serve_connection(io, TowerToHyperService::new(svc));
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

/// hyper's HTTP/1 server as every listener configures it.
pub(crate) fn http1(header_read: Duration) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read)
        .max_buf_size(MAX_BUF)
        .max_headers(MAX_HEADERS);
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
    /// A `TcpStream` that fails with `TimedOut` once no byte has moved for `idle`.
    struct IdleIo {
        #[pin]
        inner: TcpStream,
        deadline: Pin<Box<Sleep>>,
        idle: Duration,
    }
}

impl IdleIo {
    fn new(inner: TcpStream, idle: Duration) -> Self {
        IdleIo {
            inner,
            deadline: Box::pin(tokio::time::sleep(idle)),
            idle,
        }
    }
}

fn check_idle(deadline: Pin<&mut Sleep>, cx: &mut Context<'_>) -> Poll<io::Error> {
    ready!(deadline.poll(cx));
    Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "connection idle"))
}

impl AsyncRead for IdleIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        match this.inner.poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.deadline.as_mut().reset(Instant::now() + *this.idle);
                Poll::Ready(result)
            }
            Poll::Pending => check_idle(this.deadline.as_mut(), cx).map(Err),
        }
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        match this.inner.poll_write(cx, buf) {
            Poll::Ready(result) => {
                this.deadline.as_mut().reset(Instant::now() + *this.idle);
                Poll::Ready(result)
            }
            Poll::Pending => check_idle(this.deadline.as_mut(), cx).map(Err),
        }
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
        let this = self.project();
        match this.inner.poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                this.deadline.as_mut().reset(Instant::now() + *this.idle);
                Poll::Ready(result)
            }
            Poll::Pending => check_idle(this.deadline.as_mut(), cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
