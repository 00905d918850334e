//! The accept loop every listener shares (public, admin, upstream): hyper's HTTP/1 server with
//! a header-read timeout, an idle timeout, a small header buffer, the peer address as
//! `ConnectInfo`, and a graceful shutdown bounded by a drain timeout — axum's `serve` has
//! neither the timeouts nor a drain bound, so the loop is written out here.

mod idle;
mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

pub(crate) use idle::{Heads, IdleIo};
pub(crate) use service::ConnService;

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
    /// A request head must arrive whole within this once the connection waits for one, at
    /// its start and after each answer (slowloris, and idle keep-alive): see [`IdleIo`].
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
    let builder = http1();
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
        let heads = Arc::new(Heads::default());
        let io = TokioIo::new(IdleIo::new(stream, limits, heads.clone()));
        let conn = builder.serve_connection(io, ConnService::new(svc, heads));
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

/// hyper's HTTP/1 server as every listener configures it: no timer of its own, since the
/// header-read timeout is the connection's [`IdleIo`]'s (see [`Heads`]).
pub(crate) fn http1() -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.header_read_timeout(None).max_buf_size(MAX_BUF);
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
