//! Our HTTP load generator: hyper client connections with keep-alive, an open-loop fixed
//! arrival schedule (the wrk2 model), latency measured from each request's **intended** send
//! time (so a slow server cannot hide behind a stalled client: no coordinated omission), a
//! per-request deadline so no request hangs, and counts by status code.
//!
//! Loopback only: [`Target::parse_loopback`] refuses any other host, and every run is bounded
//! in time (`duration + 2 × deadline` at most).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

/// Where requests go: a loopback address and a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) host: String,
    pub(crate) path: String,
}

impl Target {
    /// Parses `http://HOST:PORT/PATH`, where HOST must be `localhost` or a loopback IP.
    pub(crate) fn parse_loopback(url: &str) -> anyhow::Result<Target> {
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("{url:?} is not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => bail!("{url:?}: only http:// is supported, not {other}://"),
            None => bail!("{url:?}: the URL needs http:// in front"),
        }
        let host = uri.host().context("the URL has no host")?;
        let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .with_context(|| format!("{host:?} is neither localhost nor an IP address"))?
        };
        ensure!(
            ip.is_loopback(),
            "refusing to load-test {host}: the lab only sends load to loopback addresses \
             (127.0.0.0/8, ::1, localhost), so it can never flood another machine"
        );
        let port = uri.port_u16().unwrap_or(80);
        let path = uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        Ok(Target {
            addr: SocketAddr::new(ip, port),
            host: format!("{host}:{port}"),
            path,
        })
    }

    /// The same server, another path.
    pub(crate) fn with_path(&self, path: &str) -> Target {
        Target {
            path: path.to_owned(),
            ..self.clone()
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}{}", self.host, self.path)
    }
}

/// What every request of a run is: its method, its body and the body's content type.
#[derive(Debug, Clone)]
pub(crate) struct RequestTemplate {
    pub(crate) method: http::Method,
    /// Sent as is (with a `content-length`); empty means no body.
    pub(crate) body: Bytes,
    pub(crate) content_type: Option<http::HeaderValue>,
}

impl Default for RequestTemplate {
    /// `GET` with no body.
    fn default() -> Self {
        RequestTemplate {
            method: http::Method::GET,
            body: Bytes::new(),
            content_type: None,
        }
    }
}

/// An open-loop run: `rate` requests per second for `duration`, on at most `connections`
/// keep-alive connections.
#[derive(Debug, Clone)]
pub(crate) struct OpenLoop {
    pub(crate) target: Target,
    pub(crate) rate: f64,
    pub(crate) duration: Duration,
    pub(crate) connections: usize,
    /// Each request's limit from its actual send to the end of its response body.
    pub(crate) deadline: Duration,
    /// A cheap path to send one request to on every connection before the clock starts
    /// (the lab server's `/hello`), so the schedule does not measure first-use costs.
    pub(crate) warm_path: Option<String>,
    /// The latency SLO: 2xx responses within it of their intended send time are counted in
    /// [`LoadReport::ok_within_slo`].
    pub(crate) slo: Duration,
    /// The request sent on the schedule (the warm-up is always a `GET`).
    pub(crate) request: RequestTemplate,
}

/// What an open-loop run saw. Latencies are in microseconds.
#[derive(Debug)]
pub(crate) struct LoadReport {
    /// Requests on the schedule (`rate × duration`).
    pub(crate) offered: u64,
    /// Requests sent.
    pub(crate) sent: u64,
    /// Requests never sent: their intended time came, but every connection was busy until
    /// the send window closed (`duration + deadline`).
    pub(crate) unsent: u64,
    /// Responses by status code.
    pub(crate) statuses: BTreeMap<u16, u64>,
    /// Requests that failed at the connection level (connect, reset, closed).
    pub(crate) errors: u64,
    /// Requests cut off at their deadline.
    pub(crate) timeouts: u64,
    /// 2xx responses, from intended send time to the end of the body.
    pub(crate) ok_latency: Histogram<u64>,
    /// 503 responses, from the actual send to the end of the body (the server's answer time).
    pub(crate) shed_latency: Histogram<u64>,
    /// 2xx responses, from the actual send (the server's time alone, without the time the
    /// request waited for a free connection in the generator).
    pub(crate) ok_service: Histogram<u64>,
    /// 503 responses, from the intended send time (what the client saw).
    pub(crate) shed_from_intended: Histogram<u64>,
    /// 2xx latency (from intended time), one histogram per second of the schedule.
    pub(crate) ok_by_second: Vec<Histogram<u64>>,
    /// 2xx responses within the SLO of their intended send time.
    pub(crate) ok_within_slo: u64,
    /// The same, per second of the schedule.
    pub(crate) ok_within_slo_by_second: Vec<u64>,
    /// From the first intended send to the last response.
    pub(crate) elapsed: Duration,
    /// From the first to the last actual send.
    pub(crate) send_window: Duration,
    /// When the schedule began (request 0's intended send time): time series align on it.
    pub(crate) start: Instant,
}

impl LoadReport {
    pub(crate) fn status(&self, code: u16) -> u64 {
        self.statuses.get(&code).copied().unwrap_or(0)
    }

    pub(crate) fn ok(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(code, _)| (200..300).contains(*code))
            .map(|(_, n)| n)
            .sum()
    }

    /// Sent requests per second, over the send window.
    pub(crate) fn achieved_rps(&self) -> f64 {
        let secs = self.send_window.as_secs_f64();
        if secs > 0.0 {
            self.sent as f64 / secs
        } else {
            0.0
        }
    }
}

pub(crate) fn histogram() -> Histogram<u64> {
    // 1 µs to 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

struct Plan {
    target: Target,
    request: RequestTemplate,
    start: Instant,
    rate: f64,
    total: u64,
    cutoff: Instant,
    deadline: Duration,
    next: AtomicU64,
    recorder: Arc<Mutex<Recorder>>,
}

/// Everything the workers measure, behind one lock taken once per request. (Per-worker
/// histograms would cost about 200 KB each per histogram, times thousands of connections.)
#[derive(Debug)]
struct Recorder {
    start: Instant,
    sent: u64,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    timeouts: u64,
    ok_latency: Histogram<u64>,
    shed_latency: Histogram<u64>,
    ok_service: Histogram<u64>,
    shed_from_intended: Histogram<u64>,
    by_second: Vec<Histogram<u64>>,
    slo_us: u64,
    within_slo: u64,
    within_slo_by_second: Vec<u64>,
    first_send: Option<Instant>,
    last_send: Option<Instant>,
    last_done: Option<Instant>,
}

/// How one request ended.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Status(u16),
    Error,
    Timeout,
}

impl Recorder {
    fn sent(&mut self, at: Instant) {
        self.sent += 1;
        self.first_send.get_or_insert(at);
        self.last_send = Some(at);
    }

    fn ended(&mut self, ending: Ending, intended: Instant, sent_at: Instant, done: Instant) {
        self.last_done = Some(self.last_done.map_or(done, |d| d.max(done)));
        match ending {
            Ending::Status(status) => {
                *self.statuses.entry(status).or_default() += 1;
                if (200..300).contains(&status) {
                    let latency = micros(done - intended);
                    self.ok_latency.saturating_record(latency);
                    self.ok_service.saturating_record(micros(done - sent_at));
                    let second = intended.saturating_duration_since(self.start).as_secs();
                    if let Some(h) = self.by_second.get_mut(second as usize) {
                        h.saturating_record(latency);
                    }
                    if latency <= self.slo_us {
                        self.within_slo += 1;
                        if let Some(n) = self.within_slo_by_second.get_mut(second as usize) {
                            *n += 1;
                        }
                    }
                } else if status == 503 {
                    self.shed_latency.saturating_record(micros(done - sent_at));
                    self.shed_from_intended
                        .saturating_record(micros(done - intended));
                }
            }
            Ending::Error => self.errors += 1,
            Ending::Timeout => self.timeouts += 1,
        }
    }
}

/// Runs an open-loop load. Needs a tokio runtime (multi-threaded preferably).
pub(crate) async fn open_loop(spec: OpenLoop) -> anyhow::Result<LoadReport> {
    ensure!(
        spec.rate.is_finite() && spec.rate > 0.0,
        "the rate must be above 0"
    );
    ensure!(spec.connections > 0, "at least one connection is needed");
    ensure!(!spec.duration.is_zero(), "the duration must be above 0");
    ensure!(!spec.deadline.is_zero(), "the deadline must be above 0");
    let total = (spec.rate * spec.duration.as_secs_f64()).round() as u64;
    ensure!(total > 0, "rate × duration is less than one request");
    // Open every connection before the clock starts, as wrk does: the schedule then measures
    // the server, not a burst of TCP handshakes.
    let mut conns = preconnect(&spec.target, spec.connections).await?;
    if let Some(path) = &spec.warm_path {
        conns = warm(conns, &spec.target.with_path(path)).await?;
    }

    let seconds = spec.duration.as_secs_f64().ceil() as usize;
    let start = Instant::now() + Duration::from_millis(10);
    let recorder = Arc::new(Mutex::new(Recorder {
        start,
        sent: 0,
        statuses: BTreeMap::new(),
        errors: 0,
        timeouts: 0,
        ok_latency: histogram(),
        shed_latency: histogram(),
        ok_service: histogram(),
        shed_from_intended: histogram(),
        by_second: (0..seconds).map(|_| histogram()).collect(),
        slo_us: micros(spec.slo),
        within_slo: 0,
        within_slo_by_second: vec![0; seconds],
        first_send: None,
        last_send: None,
        last_done: None,
    }));
    let plan = Arc::new(Plan {
        target: spec.target.clone(),
        request: spec.request.clone(),
        start,
        rate: spec.rate,
        total,
        cutoff: start + spec.duration + spec.deadline,
        deadline: spec.deadline,
        next: AtomicU64::new(0),
        recorder: recorder.clone(),
    });
    let workers: Vec<_> = conns
        .into_iter()
        .map(|conn| tokio::spawn(worker(plan.clone(), Some(conn))))
        .collect();
    for worker in workers {
        worker.await.context("a load worker panicked")?;
    }
    drop(plan);
    let r = Arc::try_unwrap(recorder)
        .map_err(|_| anyhow::anyhow!("a load worker outlived the run"))?
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a load worker panicked while recording"))?;
    let mut report = LoadReport {
        offered: total,
        sent: r.sent,
        unsent: total - r.sent,
        statuses: r.statuses,
        errors: r.errors,
        timeouts: r.timeouts,
        ok_latency: r.ok_latency,
        shed_latency: r.shed_latency,
        ok_service: r.ok_service,
        shed_from_intended: r.shed_from_intended,
        ok_by_second: r.by_second,
        ok_within_slo: r.within_slo,
        ok_within_slo_by_second: r.within_slo_by_second,
        elapsed: r
            .last_done
            .unwrap_or(start)
            .saturating_duration_since(start),
        send_window: Duration::ZERO,
        start,
    };
    if let (Some(first), Some(last)) = (r.first_send, r.last_send) {
        // The window of n sends spans n - 1 intervals; count the last one too.
        report.send_window = last.duration_since(first) + Duration::from_secs_f64(1.0 / spec.rate);
    }
    Ok(report)
}

async fn worker(plan: Arc<Plan>, mut conn: Option<SendRequest<Full<Bytes>>>) {
    let record = |f: &mut dyn FnMut(&mut Recorder)| {
        let mut r = plan.recorder.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut r);
    };
    loop {
        let i = plan.next.fetch_add(1, Ordering::Relaxed);
        if i >= plan.total {
            break;
        }
        let intended = plan.start + Duration::from_secs_f64(i as f64 / plan.rate);
        tokio::time::sleep_until(intended).await;
        let sent_at = Instant::now();
        if sent_at > plan.cutoff {
            // Too late to send within the run's bound; the caller counts it as unsent.
            break;
        }
        record(&mut |r| r.sent(sent_at));
        let outcome = tokio::time::timeout(
            plan.deadline,
            exchange(&mut conn, &plan.target, &plan.request),
        )
        .await;
        let done = Instant::now();
        let ending = match outcome {
            Ok(Ok(status)) => Ending::Status(status),
            Ok(Err(_)) => {
                conn = None;
                Ending::Error
            }
            Err(_elapsed) => {
                // The connection is mid-request; it cannot be reused.
                conn = None;
                Ending::Timeout
            }
        };
        record(&mut |r| r.ended(ending, intended, sent_at, done));
    }
}

/// One request and its whole response body on `conn`, (re)connecting when needed.
async fn exchange(
    conn: &mut Option<SendRequest<Full<Bytes>>>,
    target: &Target,
    template: &RequestTemplate,
) -> anyhow::Result<u16> {
    let reusable = match conn.as_mut() {
        // A keep-alive connection the server closed shows up here, not as a failed request.
        Some(sender) => sender.ready().await.is_ok(),
        None => false,
    };
    if !reusable {
        *conn = Some(connect(target.addr).await?);
    }
    let sender = conn.as_mut().expect("connected above");
    sender.ready().await?;
    let mut request = http::Request::builder()
        .method(template.method.clone())
        .uri(target.path.as_str())
        .header(http::header::HOST, target.host.as_str());
    if let Some(content_type) = &template.content_type {
        request = request.header(http::header::CONTENT_TYPE, content_type);
    }
    let request = request.body(Full::new(template.body.clone()))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    Ok(status)
}

/// Opens `n` connections, at most 32 handshakes at a time: gently, since a server's listen
/// backlog may be as short as 128 and an overflow costs a 1 s SYN retransmit.
async fn preconnect(target: &Target, n: usize) -> anyhow::Result<Vec<SendRequest<Full<Bytes>>>> {
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let gate = gate.clone();
        let addr = target.addr;
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            connect(addr).await
        });
    }
    let mut conns = Vec::with_capacity(n);
    while let Some(result) = set.join_next().await {
        let conn = result
            .context("a connect task panicked")?
            .with_context(|| {
                format!(
                    "cannot open connection {} of {n} to {} (is it listening? is `ulimit -n` high enough?)",
                    conns.len() + 1,
                    target.url()
                )
            })?;
        conns.push(conn);
    }
    Ok(conns)
}

/// Sends one request on every connection, 32 at a time.
async fn warm(
    conns: Vec<SendRequest<Full<Bytes>>>,
    target: &Target,
) -> anyhow::Result<Vec<SendRequest<Full<Bytes>>>> {
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let mut set = tokio::task::JoinSet::new();
    for conn in conns {
        let (gate, target) = (gate.clone(), target.clone());
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let mut conn = Some(conn);
            exchange(&mut conn, &target, &RequestTemplate::default()).await?;
            conn.context("the warm-up lost its connection")
        });
    }
    let mut warmed = Vec::new();
    while let Some(result) = set.join_next().await {
        warmed.push(result.context("a warm-up task panicked")??);
    }
    Ok(warmed)
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Errors surface on the sender side.
        let _ = connection.await;
    });
    Ok(sender)
}

/// A closed-loop run: `connections` clients each sending the next request as soon as the
/// previous one is answered, for `duration`. Measures throughput at full speed.
#[derive(Debug, Clone)]
pub(crate) struct ClosedLoop {
    pub(crate) target: Target,
    pub(crate) connections: usize,
    pub(crate) duration: Duration,
    pub(crate) deadline: Duration,
}

/// What a closed-loop run saw.
#[derive(Debug, Default)]
pub(crate) struct ClosedReport {
    pub(crate) statuses: BTreeMap<u16, u64>,
    pub(crate) errors: u64,
    pub(crate) elapsed: Duration,
}

impl ClosedReport {
    /// 2xx responses per second.
    pub(crate) fn ok_rps(&self) -> f64 {
        let ok: u64 = self
            .statuses
            .iter()
            .filter(|(c, _)| (200..300).contains(*c))
            .map(|(_, n)| n)
            .sum();
        ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs a closed-loop load.
pub(crate) async fn closed_loop(spec: ClosedLoop) -> anyhow::Result<ClosedReport> {
    ensure!(spec.connections > 0, "at least one connection is needed");
    let conns = preconnect(&spec.target, spec.connections).await?;
    let start = Instant::now();
    let end = start + spec.duration;
    let target = Arc::new(spec.target);
    let workers: Vec<_> = conns
        .into_iter()
        .map(|conn| {
            let target = target.clone();
            tokio::spawn(async move {
                let mut report = ClosedReport::default();
                let mut conn = Some(conn);
                while Instant::now() < end {
                    match tokio::time::timeout(
                        spec.deadline,
                        exchange(&mut conn, &target, &RequestTemplate::default()),
                    )
                    .await
                    {
                        Ok(Ok(status)) => *report.statuses.entry(status).or_default() += 1,
                        _ => {
                            conn = None;
                            report.errors += 1;
                        }
                    }
                }
                report
            })
        })
        .collect();
    let mut total = ClosedReport::default();
    for worker in workers {
        let r = worker.await.context("a load worker panicked")?;
        for (code, n) in r.statuses {
            *total.statuses.entry(code).or_default() += n;
        }
        total.errors += r.errors;
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// A report of nothing, for other modules' unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub(crate) fn empty_report() -> LoadReport {
        LoadReport {
            offered: 0,
            sent: 0,
            unsent: 0,
            statuses: BTreeMap::new(),
            errors: 0,
            timeouts: 0,
            ok_latency: histogram(),
            shed_latency: histogram(),
            ok_service: histogram(),
            shed_from_intended: histogram(),
            ok_by_second: Vec::new(),
            ok_within_slo: 0,
            ok_within_slo_by_second: Vec::new(),
            elapsed: Duration::ZERO,
            send_window: Duration::ZERO,
            start: Instant::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_parse() {
        let t = Target::parse_loopback("http://127.0.0.1:8080/work").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.path, "/work");
        let t = Target::parse_loopback("http://localhost:3000").unwrap();
        assert_eq!(t.addr, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(t.path, "/");
        let t = Target::parse_loopback("http://[::1]:9000/x?y=1").unwrap();
        assert_eq!(t.addr, "[::1]:9000".parse().unwrap());
        assert_eq!(t.path, "/x?y=1");
    }

    #[test]
    fn other_targets_are_refused() {
        for url in [
            "http://10.0.0.1:80/",
            "http://example.com/",
            "https://127.0.0.1/",
            "127.0.0.1:80",
            "http://0.0.0.0:8080/",
        ] {
            assert!(
                Target::parse_loopback(url).is_err(),
                "{url} should be refused"
            );
        }
        let err = Target::parse_loopback("http://192.168.1.2/").unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
    }
}
