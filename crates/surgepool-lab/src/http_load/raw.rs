//! [`Conn`]: the generator's own HTTP/1.1 client connection, one request at a time.
//!
//! The request is written as prepared bytes in one `write` and the response read into a
//! buffer the connection keeps, its head parsed with `httparse` and its body counted and
//! dropped (by `Content-Length`, chunked, or to the end of the connection), with no task
//! per connection (the open loop encodes its request once per run). Against hyper's client,
//! which it replaces, on one core at 20,000 and 40,000 requests/s: about 15 and 20–25 % less
//! of the generator's CPU, most of what is left being the kernel's loopback TCP
//! (`limit/README.md`, 2026-12-06, second session).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::request::Answer;

/// The most a response head may take.
const MAX_HEAD: usize = 64 * 1024;
/// The most headers a response head may have.
const MAX_HEADERS: usize = 64;

/// A keep-alive HTTP/1.1 connection.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed: `buf[start..end]`.
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

/// How the body of a response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// No body (a `HEAD` request, 1xx, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    ToClose,
}

impl Conn {
    /// Opens a connection to `addr` (no Nagle: requests are small and must go at once).
    pub(crate) async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: vec![0; MAX_HEAD].into_boxed_slice(),
            start: 0,
            end: 0,
        })
    }

    /// Whether the connection can carry another request: the server has not closed it
    /// nor sent anything unasked (a keep-alive connection the server closed shows up here
    /// rather than as a failed request). One non-blocking read at most.
    pub(crate) fn reusable(&mut self) -> bool {
        if self.start != self.end {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Sends `request` (a whole HTTP/1.1 request, head and body) and reads the whole
    /// response. `head_request`: the request was a `HEAD` (its response has no body).
    /// Returns the answer and whether the connection may carry another request.
    pub(crate) async fn exchange(
        &mut self,
        request: &[u8],
        head_request: bool,
    ) -> anyhow::Result<(Answer, bool)> {
        self.stream.write_all(request).await?;
        loop {
            let (answer, body, close, head_len) = self.read_head(head_request).await?;
            self.start += head_len;
            if (100..200).contains(&answer.status) {
                // An interim response (100 Continue): the final one follows.
                continue;
            }
            let reusable = self.skip_body(body).await? && !close;
            return Ok((answer, reusable));
        }
    }

    /// Reads until a whole response head is buffered; returns what it says and its length.
    async fn read_head(
        &mut self,
        head_request: bool,
    ) -> anyhow::Result<(Answer, Body, bool, usize)> {
        loop {
            if self.start < self.end {
                if let Some(parsed) = parse_head(&self.buf[self.start..self.end], head_request)? {
                    return Ok(parsed);
                }
            }
            self.compact();
            ensure!(
                self.end < self.buf.len(),
                "a response head longer than {MAX_HEAD} bytes"
            );
            let n = self.stream.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                bail!("the server closed the connection before a whole response head");
            }
            self.end += n;
        }
    }

    /// Consumes the body; returns `false` if it ran to the end of the connection.
    async fn skip_body(&mut self, body: Body) -> anyhow::Result<bool> {
        match body {
            Body::Empty => Ok(true),
            Body::Length(mut left) => {
                while left > 0 {
                    left -= self.consume(left);
                    if left > 0 {
                        self.fill()
                            .await?
                            .then_some(())
                            .context("the body ended early")?;
                    }
                }
                Ok(true)
            }
            Body::Chunked => {
                self.skip_chunks().await?;
                Ok(true)
            }
            Body::ToClose => {
                self.start = self.end;
                while self.fill().await? {
                    self.start = self.end;
                }
                Ok(false)
            }
        }
    }

    /// Consumes a chunked body and its trailers.
    async fn skip_chunks(&mut self) -> anyhow::Result<()> {
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.buf[self.start..self.end]) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.start += used;
                        break size;
                    }
                    Ok(httparse::Status::Partial) => self.fill_more().await?,
                    Err(_) => bail!("a malformed chunk size"),
                }
            };
            if size == 0 {
                // Trailers, if any, then the empty line.
                loop {
                    let line = self.buf[self.start..self.end]
                        .windows(2)
                        .position(|w| w == b"\r\n");
                    match line {
                        Some(0) => {
                            self.start += 2;
                            return Ok(());
                        }
                        Some(at) => self.start += at + 2,
                        None => self.fill_more().await?,
                    }
                }
            }
            // The chunk's data and its CRLF.
            let mut left = size.saturating_add(2);
            while left > 0 {
                left -= self.consume(left);
                if left > 0 {
                    self.fill_more().await?;
                }
            }
        }
    }

    /// Drops up to `most` buffered bytes; returns how many.
    fn consume(&mut self, most: u64) -> u64 {
        let n = (self.end - self.start).min(usize::try_from(most).unwrap_or(usize::MAX));
        self.start += n;
        n as u64
    }

    /// Moves the unconsumed bytes to the front of the buffer.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Reads more bytes; `false` at the end of the connection.
    async fn fill(&mut self) -> io::Result<bool> {
        self.compact();
        if self.end == self.buf.len() {
            // Only a body is read through here, and it is consumed as it comes: a full
            // buffer holds one unfinished line of a chunked body.
            return Err(io::Error::other("a chunk-size line longer than the buffer"));
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n > 0)
    }

    /// [`fill`](Self::fill), where the end of the connection is an error.
    async fn fill_more(&mut self) -> anyhow::Result<()> {
        ensure!(
            self.fill().await?,
            "the server closed the connection mid-body"
        );
        Ok(())
    }
}

/// Parses a response head at the start of `bytes`: `None` if it is not all there yet.
fn parse_head(
    bytes: &[u8],
    head_request: bool,
) -> anyhow::Result<Option<(Answer, Body, bool, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(bytes).context("a malformed response head")? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let status = response.code.context("a response head without a status")?;
    let http10 = response.version == Some(0);
    let (mut length, mut chunked, mut retry_after) = (None, false, None);
    // Over every `Connection` header: `close` anywhere wins (RFC 9112 §9.6), and an
    // HTTP/1.0 response persists only with `keep-alive`.
    let (mut close_token, mut keep_alive_token) = (false, false);
    for header in response.headers.iter() {
        let value = header.value;
        if header.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(value).context("a non-ASCII content-length")?;
            length = Some(
                text.trim()
                    .parse::<u64>()
                    .context("a malformed content-length")?,
            );
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                close_token |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if header.name.eq_ignore_ascii_case("retry-after") {
            retry_after = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
        }
    }
    let close = close_token || (http10 && !keep_alive_token);
    let body = if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        Body::Empty
    } else if chunked {
        Body::Chunked
    } else if let Some(length) = length {
        Body::Length(length)
    } else {
        Body::ToClose
    };
    Ok(Some((
        Answer {
            status,
            retry_after,
        },
        body,
        close,
        len,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers each request (read up to its blank line) with the next of
    /// `responses`, written in pieces of `piece` bytes, then closes.
    async fn serve(responses: Vec<&'static [u8]>, piece: usize) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            for response in responses {
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut buf = [0u8; 1024];
                    let n = socket.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                seen.clear();
                for part in response.chunks(piece) {
                    socket.write_all(part).await.unwrap();
                    socket.flush().await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
        });
        addr
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

    #[tokio::test]
    async fn reads_lengths_chunks_and_interim_responses_in_any_pieces() {
        let responses: Vec<&'static [u8]> = vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n\
              5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\ntrailer: t\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
        ];
        for piece in [1, 3, 1000] {
            let addr = serve(responses.clone(), piece).await;
            let mut conn = Conn::connect(addr).await.unwrap();
            let mut answers = Vec::new();
            for _ in 0..responses.len() {
                assert!(conn.reusable(), "piece {piece}");
                answers.push(conn.exchange(GET, false).await.unwrap());
            }
            let statuses: Vec<(u16, bool)> = answers.iter().map(|(a, r)| (a.status, *r)).collect();
            assert_eq!(
                statuses,
                [
                    (200, true),
                    (503, true),
                    (201, true),
                    (204, true),
                    (200, false)
                ],
                "piece {piece}"
            );
            assert_eq!(answers[1].0.retry_after, Some(Duration::from_secs(1)));
            assert_eq!(answers[0].0.retry_after, None);
        }
    }

    #[tokio::test]
    async fn a_body_to_the_end_of_the_connection_and_a_closed_connection() {
        let addr = serve(vec![b"HTTP/1.0 200 OK\r\n\r\nall of it"], 4).await;
        let mut conn = Conn::connect(addr).await.unwrap();
        let (answer, reusable) = conn.exchange(GET, false).await.unwrap();
        assert_eq!((answer.status, reusable), (200, false));
        // The server is gone: the next exchange fails, it does not hang.
        assert!(conn.exchange(GET, false).await.is_err());
    }

    #[tokio::test]
    async fn bad_heads_and_short_bodies_are_errors() {
        for response in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n"[..],
            b"NOT HTTP\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        ] {
            let addr = serve(vec![response], 1000).await;
            let mut conn = Conn::connect(addr).await.unwrap();
            let outcome = conn.exchange(GET, false).await;
            assert!(outcome.is_err(), "{}", String::from_utf8_lossy(response));
        }
    }

    #[test]
    fn close_in_any_connection_header_wins() {
        let close = |head: &[u8]| parse_head(head, false).unwrap().unwrap().2;
        // A later `keep-alive` used to undo an earlier `close`.
        assert!(close(
            b"HTTP/1.1 200 OK\r\nconnection: close\r\nconnection: keep-alive\r\n\r\n"
        ));
        assert!(close(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\n\r\n"
        ));
        assert!(!close(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
        // HTTP/1.0 closes unless told to keep the connection.
        assert!(close(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(!close(
            b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n"
        ));
    }

    #[tokio::test]
    async fn a_head_request_has_no_body_whatever_its_length_says() {
        let addr = serve(
            vec![
                b"HTTP/1.1 200 OK\r\ncontent-length: 500\r\n\r\n",
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            ],
            1000,
        )
        .await;
        let mut conn = Conn::connect(addr).await.unwrap();
        let head = b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n";
        assert_eq!(conn.exchange(head, true).await.unwrap().0.status, 200);
        assert_eq!(conn.exchange(GET, false).await.unwrap().0.status, 200);
    }
}
