//! The accept loop and per-connection serving, with the timeouts `axum::serve` lacks.
//!
//! `axum::serve` gives hyper no timer, and hyper enforces its header-read timeout only with
//! one: a slowloris client (a request head sent a byte at a time, or never finished) and
//! every idle keep-alive connection were held forever. With `ulimit -n 1024`, 1,100 such
//! connections made `/hello` time out for 30 s. So connections are served here, by hyper's
//! http1 builder directly, with two bounds:
//!
//! - `header_read`: hyper's `header_read_timeout`. Its timer starts as soon as the connection
//!   is ready for a request head, so it bounds both a slow head and the idle wait between
//!   keep-alive requests.
//! - `idle`: a connection on which no byte has moved for this long, while no handler runs, is
//!   closed. This catches what the header timer cannot: a client that stopped reading a
//!   response (hyper then waits to write, with the header timer not running). A handler that
//!   works for a long time is not idleness: the layer's deadline is what bounds it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a connection may keep the server waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// From "ready for a request head" to the whole head received: a slow head, or an idle
    /// keep-alive connection.
    pub(crate) header_read: Duration,
    /// No byte moved either way, and no handler running.
    pub(crate) idle: Duration,
}

impl Timeouts {
    /// The longest timeout accepted: hyper adds the header timeout to its clock without a
    /// check, so `Duration::MAX` would overflow there.
    pub(crate) const MAX: Duration = Duration::from_secs(86_400);
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
        }
    }
}

/// After an accept error that is not about one connection (EMFILE: out of file
/// descriptors), wait this long before the next accept rather than spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, asks every
/// connection to finish its request in flight and close, and returns when all are closed.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read.min(Timeouts::MAX));
    // Each connection holds a receiver; `closed()` on the sender is "every connection gone".
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) if is_connection_error(&err) => continue,
                Err(_) => {
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = serve_connection(
            http.clone(),
            stream,
            app.clone(),
            timeouts.idle,
            stopped.clone(),
        );
        tokio::spawn(connection);
    }
    drop(listener);
    drop(stopped);
    let _ = stop.send(true);
    stop.closed().await;
    Ok(())
}

/// Errors about one connection that went away during the handshake: accept the next one.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// What a connection's idle timer watches: the last time a byte moved, and the handlers
/// running.
#[derive(Debug)]
struct Activity {
    since: Instant,
    /// Nanoseconds from `since` to the last progress.
    last: AtomicU64,
    handlers: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            since: Instant::now(),
            last: AtomicU64::new(0),
            handlers: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.fetch_max(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.since + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }

    /// Resolves once the connection has been idle for `idle`: no handler running and no byte
    /// moved.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let now = Instant::now();
            let next = if self.handlers.load(Ordering::Acquire) > 0 {
                now.checked_add(idle)
            } else {
                match self.last().checked_add(idle) {
                    Some(at) if at <= now => return,
                    at => at,
                }
            };
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await, // beyond the clock: never
            }
        }
    }
}

/// Counts a handler as running; its end counts as progress (the response is about to be
/// written, so the idle timer must not fire on the quiet time the handler took).
struct Handler(Arc<Activity>);

impl Handler {
    fn enter(activity: &Arc<Activity>) -> Handler {
        activity.handlers.fetch_add(1, Ordering::AcqRel);
        Handler(activity.clone())
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        self.0.touch();
        self.0.handlers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A socket that records when bytes move.
struct Watched {
    io: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serves one connection until it closes, fails, or stays idle for `idle`; when `stopped`
/// turns true, lets the request in flight finish and closes (still bounded by `idle`).
async fn serve_connection(
    http: hyper::server::conn::http1::Builder,
    stream: TcpStream,
    app: Router,
    idle: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = Watched {
        io: stream,
        activity: activity.clone(),
    };
    let on_request = activity.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let handler = Handler::enter(&on_request);
        let app = app.clone();
        async move {
            let response = tower::ServiceExt::oneshot(app, request).await;
            drop(handler);
            response
        }
    });
    let conn = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let idle = activity.idle_for(idle);
    tokio::pin!(idle);
    // A connection error (a reset, a header timeout) ends the connection like a close: there
    // is no one to report it to. Idleness ends it by dropping it, which closes the socket.
    tokio::select! {
        _ = conn.as_mut() => return,
        () = idle.as_mut() => return,
        _ = stopped.wait_for(|stop| *stop) => conn.as_mut().graceful_shutdown(),
    }
    tokio::select! {
        _ = conn => {}
        () = idle => {}
    }
}

#[cfg(test)]
mod tests {
    //! Real sockets on loopback, paused time: the clock jumps to the next timer whenever
    //! every task waits, so the timeouts fire without the test sleeping.

    use std::net::SocketAddr;

    use axum::body::Body;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(30),
    };

    /// 64 MiB: far more than loopback socket buffers hold.
    const BIG: usize = 64 << 20;

    async fn start() -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let app = Router::new()
            .route("/hello", get(|| async { "hello" }))
            .route("/big", get(|| async { Body::from(vec![b'x'; BIG]) }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, TIMEOUTS, async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Reads until the server closes (or resets) the connection; `None` if it did not within
    /// `within` (of paused time).
    async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
        let mut seen = Vec::new();
        let read = async {
            let mut buf = vec![0; 64 << 10];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
        };
        tokio::time::timeout(within, read).await.ok()?;
        Some(seen)
    }

    async fn hello(addr: SocketAddr) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /hello HTTP/1.1\r\nhost: lab\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let response = read_until_closed(&mut stream, Duration::from_secs(5))
            .await
            .expect("an answer");
        String::from_utf8_lossy(&response).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn a_slowloris_connection_is_closed_and_a_normal_request_then_succeeds() {
        let (addr, _stop) = start().await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        let start = Instant::now();
        // A head that never ends: one header line, then silence.
        slow.write_all(b"GET /hello HTTP/1.1\r\nhost: lab\r\n")
            .await
            .unwrap();
        let seen = read_until_closed(&mut slow, Duration::from_secs(3_600))
            .await
            .expect("the server never closed the slowloris connection");
        assert!(!String::from_utf8_lossy(&seen).contains("hello"));
        let waited = start.elapsed();
        assert!(
            waited >= TIMEOUTS.header_read && waited < TIMEOUTS.idle,
            "closed after {waited:?}"
        );
        let response = hello(addr).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("hello"), "{response}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_keep_alive_connection_is_closed() {
        let (addr, _stop) = start().await;
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /hello HTTP/1.1\r\nhost: lab\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0; 1024];
        let n = conn.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("hello"));
        let start = Instant::now();
        // The answer is complete; the connection is kept alive, then closed when idle.
        let rest = read_until_closed(&mut conn, Duration::from_secs(3_600))
            .await
            .expect("the idle keep-alive connection was never closed");
        assert!(rest.is_empty());
        assert!(start.elapsed() >= TIMEOUTS.header_read);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_its_response_is_closed_when_idle() {
        let (addr, _stop) = start().await;
        let mut reader = TcpStream::connect(addr).await.unwrap();
        reader
            .write_all(b"GET /big HTTP/1.1\r\nhost: lab\r\n\r\n")
            .await
            .unwrap();
        // Not reading: the server fills the socket buffers and waits to write. The header
        // timer does not run meanwhile; the idle timer does.
        tokio::time::sleep(TIMEOUTS.idle + Duration::from_secs(1)).await;
        let seen = read_until_closed(&mut reader, Duration::from_secs(3_600))
            .await
            .expect("the connection was never closed");
        assert!(
            seen.len() < BIG,
            "the whole body came through ({} bytes): the stalled connection was kept",
            seen.len()
        );
        // And the server still serves.
        assert!(hello(addr).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_handler_is_not_idleness() {
        let app = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(TIMEOUTS.idle * 3).await;
                "done"
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, app, TIMEOUTS, std::future::pending()));
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /slow HTTP/1.1\r\nhost: lab\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let response = read_until_closed(&mut conn, Duration::from_secs(3_600))
            .await
            .unwrap();
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("done"), "{response}");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_the_request_in_flight() {
        let app = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "done"
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app, TIMEOUTS, async {
            let _ = stopped.await;
        }));
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /slow HTTP/1.1\r\nhost: lab\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.send(()).unwrap();
        let response = read_until_closed(&mut conn, Duration::from_secs(3_600))
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&response).ends_with("done"));
        server.await.unwrap().unwrap();
    }
}
