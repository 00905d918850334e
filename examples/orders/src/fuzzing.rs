//! The service in-process, for the `orders_request` fuzz target (`fuzz/`) and its test
//! (`tests/orders_request_bytes.rs`).
//!
//! [`Harness::exchange`] sends arbitrary bytes as one client connection into hyper's HTTP/1
//! server, configured as the real listeners configure it (`net::http1`), through the whole
//! layer stack and the routes, on a SQLite database in a fresh directory. The client writes
//! everything, closes its write half and reads the answer to the end. [`Exchange::check`]
//! then asks of the bytes that came back what a client may always rely on:
//! - they are a sequence of well-formed HTTP/1.x responses, each framed as its headers say
//!   (`Content-Length`, chunked, no body for `HEAD`, 1xx, 204 and 304), with nothing after;
//! - no response is a 500: a request, however malformed, is a 4xx, never a crash or a bug;
//! - every request that reached the service got exactly one final answer carrying its
//!   `x-request-id`, and at most one more answer follows: hyper's own refusal of a request
//!   head it could not parse, after which the connection closes.
//!
//! Not a public API: it exists for the fuzzer and changes with the service.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::ConnectInfo;
use clap::Parser as _;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt as _};

use crate::config::Cli;
use crate::state::AppState;
use crate::{app, net, serve, storage};

/// One exchange that takes longer than this is a hang: every timeout of the service is
/// shorter (request 2 s, header read 5 s, body pause 1 s, upstream 500 ms).
const HANG: Duration = Duration::from_secs(20);
/// The client's address, as `net::serve` would insert it.
const PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000);

type Service = BoxCloneSyncService<Request<Incoming>, Response<Body>, Infallible>;

/// The service and its runtime, built once and used for any number of exchanges.
pub struct Harness {
    rt: tokio::runtime::Runtime,
    service: Service,
    state: AppState,
    limits: net::ConnLimits,
    dir: PathBuf,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// What one connection sent back.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The methods of the requests that reached the service, in order.
    pub methods: Vec<Method>,
    /// Every byte the server wrote.
    pub output: Vec<u8>,
}

impl Harness {
    /// The service with its defaults, except: the database is a SQLite file in a new
    /// directory (in `/dev/shm` when there is one, so that commits cost no disk flush), the
    /// upstream is a closed port (quotes fail fast and open the breaker), the rate limit is
    /// high enough that the fuzzer is not refused for its speed, and loopback is a trusted
    /// proxy so that `X-Forwarded-For` is parsed.
    pub fn new() -> anyhow::Result<Harness> {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        remove_stale(&base);
        let dir = base.join(format!(
            "orders-fuzz-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let database = format!("sqlite://{}", dir.join("orders.db").display());
        let cli = Cli::try_parse_from([
            "orders",
            "--database",
            &database,
            "--upstream-url",
            "http://127.0.0.1:1",
            "--rate-limit",
            "1000000",
            "--rate-burst",
            "1000000",
            "--trusted-proxy",
            "127.0.0.1",
        ])?;
        let cfg = cli.serve.validate()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (state, service) = rt.block_on(async {
            let storage = storage::open(&cfg.database).await?;
            let state = AppState::new(&cfg, storage, None)?;
            let admission = app::admission(&cfg)?;
            let service = ServiceBuilder::new()
                .map_response(|r: Response<_>| r.map(Body::new))
                .service(app::build(
                    &cfg,
                    state.0.metrics.clone(),
                    admission,
                    app::router(state.clone()),
                ));
            anyhow::Ok((state, BoxCloneSyncService::new(service)))
        })?;
        Ok(Harness {
            rt,
            service,
            state,
            limits: serve::public_limits(&cfg),
            dir,
        })
    }

    /// Sends `input` as one connection and returns what came back.
    ///
    /// # Panics
    /// When one exchange takes longer than 20 s (every timeout of the service is shorter):
    /// that is a hang, a bug the fuzzer must report.
    pub fn exchange(&self, input: &[u8]) -> Exchange {
        let methods = Arc::new(Mutex::new(Vec::new()));
        let seen = methods.clone();
        let service = self
            .service
            .clone()
            .map_request(move |mut req: Request<Incoming>| {
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(req.method().clone());
                req.extensions_mut().insert(ConnectInfo(PEER));
                req
            });
        let mut builder = net::http1();
        // The client closes its write half once the input is sent: the answers must still
        // come (by default hyper treats a read EOF as the client gone).
        builder.half_close(true);
        let output = self.rt.block_on(async {
            let (client, server) = tokio::io::duplex(64 * 1024);
            // The adapter the listeners use (one copy of the stack per connection).
            let heads = Arc::new(net::Heads::default());
            let server = net::IdleIo::new(server, self.limits, heads.clone());
            let conn = builder
                .serve_connection(TokioIo::new(server), net::ConnService::new(service, heads));
            let (mut rd, mut wr) = tokio::io::split(client);
            let send = async {
                // The server may close early (a refused head): the rest is not wanted.
                if wr.write_all(input).await.is_ok() {
                    let _ = wr.shutdown().await;
                }
            };
            let receive = async {
                let mut out = Vec::new();
                let _ = rd.read_to_end(&mut out).await;
                out
            };
            let run = async {
                let (_, (), out) = tokio::join!(conn, send, receive);
                out
            };
            match tokio::time::timeout(HANG, run).await {
                Ok(out) => out,
                Err(_) => panic!("orders: one connection took longer than {HANG:?}"),
            }
        });
        let methods = std::mem::take(&mut *methods.lock().unwrap_or_else(|e| e.into_inner()));
        Exchange { methods, output }
    }
}

/// The fuzz target's harness lives until the process exits, so its directory outlives it:
/// each new harness removes those of processes that are gone (where `/proc` says so).
fn remove_stale(base: &std::path::Path) {
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("orders-fuzz-"))
            .and_then(|n| n.split('-').next())
        else {
            continue;
        };
        if !pid.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
            && !std::path::Path::new("/proc").join(pid).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let writer = &self.state.0.writer;
        self.rt.block_on(writer.shutdown(Duration::from_secs(1)));
        self.state.0.storage.shutdown(Duration::from_secs(1));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Exchange {
    /// Checks the answer (see the module docs); returns the number of final responses.
    pub fn check(&self) -> Result<usize, String> {
        let mut rest = &self.output[..];
        let mut finals = 0;
        while !rest.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut headers);
            let head = match response.parse(rest) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => {
                    return Err(format!("response {finals}: head cut off"))
                }
                Err(err) => return Err(format!("response {finals}: bad head: {err}")),
            };
            // HTTP/1.0 to a 1.0 request, HTTP/1.1 otherwise.
            if !matches!(response.version, Some(0 | 1)) {
                return Err(format!("response {finals}: not HTTP/1.x"));
            }
            let code = response.code.unwrap_or(0);
            if !(100..=599).contains(&code) {
                return Err(format!("response {finals}: status {code}"));
            }
            if code == 500 {
                return Err(format!("response {finals}: 500 Internal Server Error"));
            }
            let framing = Framing::of(response.headers)
                .map_err(|why| format!("response {finals} ({code}): {why}"))?;
            let informational = code < 200;
            let to_service = finals < self.methods.len();
            if !informational && to_service && !framing.request_id {
                return Err(format!("response {finals} ({code}): no x-request-id"));
            }
            let bodiless = informational
                || code == 204
                || code == 304
                || (to_service && self.methods[finals] == Method::HEAD);
            rest = &rest[head..];
            if !bodiless {
                rest = match framing.length {
                    Length::Chunked => skip_chunked(rest)
                        .map_err(|why| format!("response {finals} ({code}): {why}"))?,
                    Length::Fixed(n) => match rest.get(n..) {
                        Some(after) => after,
                        None => {
                            return Err(format!(
                                "response {finals} ({code}): body of {} bytes, {n} announced",
                                rest.len()
                            ))
                        }
                    },
                    Length::UntilClose => &[],
                };
            }
            if !informational {
                finals += 1;
                if finals > self.methods.len() && !rest.is_empty() {
                    return Err(format!(
                        "bytes after hyper's refusal (response {finals}, {code})"
                    ));
                }
            }
        }
        if finals < self.methods.len() {
            return Err(format!(
                "{} requests reached the service, {finals} answers came back",
                self.methods.len()
            ));
        }
        Ok(finals)
    }
}

enum Length {
    Fixed(usize),
    Chunked,
    UntilClose,
}

struct Framing {
    length: Length,
    request_id: bool,
}

impl Framing {
    fn of(headers: &[httparse::Header<'_>]) -> Result<Framing, String> {
        let mut length = Length::UntilClose;
        let mut request_id = false;
        for h in headers {
            if h.name.eq_ignore_ascii_case("content-length") {
                if !matches!(length, Length::UntilClose) {
                    return Err("two framing headers".to_owned());
                }
                let n = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .ok_or("unreadable content-length")?;
                length = Length::Fixed(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                if !matches!(length, Length::UntilClose) {
                    return Err("two framing headers".to_owned());
                }
                if !h.value.eq_ignore_ascii_case(b"chunked") {
                    return Err("transfer-encoding other than chunked".to_owned());
                }
                length = Length::Chunked;
            } else if h.name.eq_ignore_ascii_case("x-request-id") {
                request_id = true;
            }
        }
        Ok(Framing { length, request_id })
    }
}

/// The bytes after a chunked body, or why it is malformed.
fn skip_chunked(mut rest: &[u8]) -> Result<&[u8], String> {
    loop {
        let (size, after) = match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete((n, size))) => (size, &rest[n..]),
            Ok(httparse::Status::Partial) => return Err("chunk size cut off".to_owned()),
            Err(_) => return Err("bad chunk size".to_owned()),
        };
        let size = usize::try_from(size).map_err(|_| "huge chunk".to_owned())?;
        if size == 0 {
            // No trailers from this service: the last chunk ends with an empty line.
            return after
                .strip_prefix(b"\r\n")
                .ok_or_else(|| "last chunk not closed".to_owned());
        }
        let data_end = size.checked_add(2).ok_or("huge chunk")?;
        let chunk = after.get(..data_end).ok_or("chunk cut off")?;
        if !chunk.ends_with(b"\r\n") {
            return Err("chunk not closed by CRLF".to_owned());
        }
        rest = &after[data_end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(methods: &[Method], output: &str) -> Exchange {
        Exchange {
            methods: methods.to_vec(),
            output: output.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_checker_accepts_well_formed_answers() {
        let ok = "HTTP/1.1 200 OK\r\nx-request-id: 1\r\ncontent-length: 2\r\n\r\nhi";
        assert_eq!(exchange(&[Method::GET], ok).check(), Ok(1));
        let head = "HTTP/1.1 200 OK\r\nx-request-id: 1\r\ncontent-length: 2\r\n\r\n";
        let two = format!("{head}{ok}");
        assert_eq!(exchange(&[Method::HEAD, Method::GET], &two).check(), Ok(2));
        let chunked = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nx-request-id: 1\r\n\
                       transfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n\
                       HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        assert_eq!(exchange(&[Method::POST], chunked).check(), Ok(2));
        assert_eq!(exchange(&[], "").check(), Ok(0));
    }

    #[test]
    fn the_checker_refuses_what_a_client_could_not_rely_on() {
        let bad = [
            (vec![Method::GET], "HTTP/1.1 500 Internal Server Error\r\nx-request-id: 1\r\ncontent-length: 0\r\n\r\n"),
            (vec![Method::GET], "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            (vec![Method::GET], "HTTP/1.1 200 OK\r\nx-request-id: 1\r\ncontent-length: 5\r\n\r\nhi"),
            (vec![Method::GET], "HTTP/1.1 200 OK\r\nx-request-id: 1\r\ncontent-le"),
            (vec![Method::GET], "HTTP/1.1 200 OK\r\nx-request-id: 1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhi"),
            (vec![Method::GET, Method::GET], "HTTP/1.1 200 OK\r\nx-request-id: 1\r\ncontent-length: 0\r\n\r\n"),
            (vec![], "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nHTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"),
            (vec![], "garbage"),
        ];
        for (methods, output) in bad {
            assert!(
                exchange(&methods, output).check().is_err(),
                "accepted: {output:?}"
            );
        }
    }
}
