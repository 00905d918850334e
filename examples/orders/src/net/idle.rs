//! A connection's two clocks, kept by its I/O on one coarse timer: the idle clock (no byte
//! moved) and the request-head clock (a head must arrive whole once the connection waits for
//! one: slowloris, and idle keep-alive).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::ConnLimits;

/// What the service side of a connection tells its I/O: requests whose head arrived and whose
/// answer is not over, and how often that changed.
///
/// The head clock runs while no request is open, from the last change: from the connection's
/// start, and from the end of each answer, as hyper's own header-read timeout runs. hyper's
/// timer costs every request a boxed `Sleep` and a timer-wheel insert and removal (with
/// tower-http's timeout, a third of `/api/hello`'s timer work); this one costs two counter
/// writes a request.
///
/// Both sides run in the connection's task, one poll at a time, so each counter has one
/// writer at a time and the task's hand-over between threads orders its writes: plain loads
/// and stores suffice. They are atomics only because the connection must be `Send`.
#[derive(Debug, Default)]
pub(crate) struct Heads {
    /// Heads handed to the service.
    begun: AtomicU64,
    /// Answers over (their body ended or was dropped, or the service failed).
    ended: AtomicU64,
}

impl Heads {
    /// hyper handed a request head to the service.
    pub(crate) fn begin(&self) {
        bump(&self.begun);
    }

    /// The answer to a request is over.
    pub(crate) fn end(&self) {
        bump(&self.ended);
    }

    /// Requests open.
    #[cfg(test)]
    pub(crate) fn open(&self) -> u64 {
        let (begun, ended) = self.counts();
        begun.wrapping_sub(ended)
    }

    /// (heads begun, answers ended).
    fn counts(&self) -> (u64, u64) {
        (
            self.begun.load(Ordering::Relaxed),
            self.ended.load(Ordering::Relaxed),
        )
    }
}

fn bump(counter: &AtomicU64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

/// Ticks per shorter limit (see [`IdleIo`]).
const TICKS: u32 = 4;

pin_project! {
    #[project = IdleIoProj]
    /// A stream that fails with `TimedOut` once no byte has moved for `idle`, or once it has
    /// waited `header_read` for a request head ([`Heads`]).
    ///
    /// The clocks are coarse on purpose: a byte that moves only sets a flag, and a timer that
    /// ticks every quarter of the shorter limit checks both. Resetting a timer on every read
    /// and write costs a clock read and a timer-wheel move per call, a few percent of a small
    /// request's CPU. So a connection is closed between a limit and a limit plus a quarter of
    /// the shorter one after the clock started.
    pub(crate) struct IdleIo<T> {
        #[pin]
        inner: T,
        tick: Pin<Box<Sleep>>,
        period: Duration,
        // A byte moved since the last tick.
        moved: bool,
        // Ticks in a row with no byte moved, and how many close the connection.
        quiet: u32,
        idle_ticks: u32,
        heads: Arc<Heads>,
        // `heads` at the last tick.
        seen: (u64, u64),
        // Ticks in a row waiting for a head with nothing changed, and how many close the
        // connection.
        waiting: u32,
        head_ticks: u32,
    }
}

/// Ticks of `period` that cover `limit` (at least one).
fn ticks(limit: Duration, period: Duration) -> u32 {
    let n = limit.as_nanos().div_ceil(period.as_nanos().max(1));
    u32::try_from(n).unwrap_or(u32::MAX).max(1)
}

impl<T> IdleIo<T> {
    pub(crate) fn new(inner: T, limits: ConnLimits, heads: Arc<Heads>) -> Self {
        let period = (limits.idle.min(limits.header_read) / TICKS).max(Duration::from_millis(1));
        IdleIo {
            inner,
            tick: Box::pin(tokio::time::sleep(period)),
            period,
            moved: false,
            quiet: 0,
            idle_ticks: ticks(limits.idle, period),
            heads,
            seen: (0, 0),
            waiting: 0,
            head_ticks: ticks(limits.header_read, period),
        }
    }
}

impl<T> IdleIoProj<'_, T> {
    /// Polled when an I/O call is pending: `Ready` once a clock ran out.
    fn check(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            ready!(self.tick.as_mut().poll(cx));
            if std::mem::take(self.moved) {
                *self.quiet = 0;
            } else {
                *self.quiet = self.quiet.saturating_add(1);
                if *self.quiet >= *self.idle_ticks {
                    return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "connection idle"));
                }
            }
            let now = self.heads.counts();
            if now != *self.seen || now.0 != now.1 {
                // A head arrived or an answer ended since the last tick, or a request is
                // open: the head clock starts (again) from here.
                *self.seen = now;
                *self.waiting = 0;
            } else {
                *self.waiting = self.waiting.saturating_add(1);
                if *self.waiting >= *self.head_ticks {
                    return Poll::Ready(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request head in time",
                    ));
                }
            }
            // From now, not from the missed deadline: a connection busy for an hour does not
            // spin through its missed ticks.
            self.tick.as_mut().reset(Instant::now() + *self.period);
        }
    }

    /// An I/O call's result: a byte moved when it is ready; the clocks when it is pending.
    fn after<R>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match result {
            Poll::Ready(result) => {
                *self.moved = true;
                Poll::Ready(result)
            }
            Poll::Pending => self.check(cx).map(Err),
        }
    }
}

impl<T: AsyncRead> AsyncRead for IdleIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut this = self.project();
        let result = this.inner.as_mut().poll_read(cx, buf);
        this.after(cx, result)
    }
}

impl<T: AsyncWrite> AsyncWrite for IdleIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut this = self.project();
        let result = this.inner.as_mut().poll_write(cx, buf);
        this.after(cx, result)
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
        this.after(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    async fn pair(limits: ConnLimits) -> (Pin<Box<IdleIo<TcpStream>>>, TcpStream, Arc<Heads>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let heads = Arc::new(Heads::default());
        (
            Box::pin(IdleIo::new(server, limits, heads.clone())),
            client,
            heads,
        )
    }

    /// Limits where only the idle clock matters: a request is open throughout.
    async fn idle_pair(idle: Duration) -> (Pin<Box<IdleIo<TcpStream>>>, TcpStream) {
        let limits = ConnLimits {
            header_read: idle,
            idle,
        };
        let (io, client, heads) = pair(limits).await;
        heads.begin();
        (io, client)
    }

    /// A silent connection fails after between `idle` and a quarter more; a byte that moves
    /// starts the count again.
    #[tokio::test(start_paused = true)]
    async fn idle_io_closes_after_idle_of_silence_and_not_before() {
        let idle = Duration::from_secs(4);
        let (mut io, mut client) = idle_pair(idle).await;
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
        assert_eq!(err.to_string(), "connection idle");
        let quiet = moved.elapsed();
        assert!(
            quiet >= idle && quiet <= idle + idle / TICKS,
            "closed after {quiet:?} of silence"
        );
        drop(writer.await.unwrap());
    }

    /// A connection that keeps moving bytes stays open however long it lives.
    #[tokio::test(start_paused = true)]
    async fn idle_io_keeps_a_busy_connection() {
        let idle = Duration::from_secs(1);
        let (mut io, mut client) = idle_pair(idle).await;
        let mut buf = [0u8; 8];
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(900)).await;
            client.write_all(b"y").await.unwrap();
            assert_eq!(io.read(&mut buf).await.unwrap(), 1);
        }
    }

    /// The head clock: a client dribbling bytes (never idle) is cut between `header_read` and
    /// a quarter more after the connection began waiting for a head, at its start and after an
    /// answer ended; not while a request is open, however long.
    #[tokio::test(start_paused = true)]
    async fn a_request_head_must_arrive_within_header_read_of_waiting_for_one() {
        let header_read = Duration::from_secs(2);
        let limits = ConnLimits {
            header_read,
            idle: Duration::from_secs(60),
        };
        let read_until_cut = |mut io: Pin<Box<IdleIo<TcpStream>>>, mut client: TcpStream| async move {
            let start = Instant::now();
            let dribble = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if client.write_all(b"x").await.is_err() {
                        return;
                    }
                }
            });
            let mut buf = [0u8; 8];
            let cut = async {
                loop {
                    match io.read(&mut buf).await {
                        Ok(n) => assert!(n > 0),
                        Err(err) => break err,
                    }
                }
            };
            let err = tokio::time::timeout(header_read * 3, cut)
                .await
                .expect("never cut");
            dribble.abort();
            (err, start.elapsed(), io)
        };

        // From the start.
        let (io, client, _heads) = pair(limits).await;
        let (err, after, _) = read_until_cut(io, client).await;
        assert_eq!(err.to_string(), "no request head in time");
        assert!(
            after >= header_read && after <= header_read + header_read / TICKS,
            "cut after {after:?}"
        );

        // A request open for ten times the limit is not cut; its answer's end starts the
        // clock again.
        let (mut io, mut client, heads) = pair(limits).await;
        heads.begin();
        let opened = Instant::now();
        let writer = tokio::spawn(async move {
            for _ in 0..200 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                client.write_all(b"x").await.unwrap();
            }
            client
        });
        let mut buf = [0u8; 8];
        while opened.elapsed() < header_read * 10 {
            assert!(io.read(&mut buf).await.unwrap() > 0);
        }
        let client = writer.await.unwrap();
        heads.end();
        let (err, after, _) = read_until_cut(io, client).await;
        assert_eq!(err.to_string(), "no request head in time");
        assert!(
            after >= header_read && after <= header_read + header_read / TICKS,
            "cut after {after:?}"
        );
    }

    #[test]
    fn ticks_cover_the_limit() {
        let ms = Duration::from_millis;
        assert_eq!(ticks(ms(1000), ms(250)), 4);
        assert_eq!(ticks(ms(1001), ms(250)), 5);
        assert_eq!(ticks(ms(1), ms(250)), 1);
        assert_eq!(ticks(Duration::MAX, ms(1)), u32::MAX);
    }
}
