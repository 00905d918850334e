//! `surgepool-lab http`: seeds 001/002 over real HTTP. The lab's axum server runs in child
//! processes on 127.0.0.1, once bare and once behind `surgepool_tower::AdmissionLayer`; our
//! open-loop generator drives each above the layered server's capacity, and a closed loop
//! on `/hello` measures the layer's overhead at full speed.
//!
//! Method (DESIGN.md, "Honest measurement"):
//! - capacity: the layered server's goodput (2xx/s on `/work`) in a closed loop with
//!   `--probe-connections` clients, after a warm-up that lets an adaptive limit settle;
//! - overload: both servers get the same open-loop schedule at `--overload ×` that capacity
//!   (or `--rps`); latency runs from each request's intended send time to the end of its body;
//! - memory: the child's RSS from `/proc` ([`crate::rss`], 20 samples a second); a child past
//!   `--mem-cap-mb` is killed and reported as stopped at the cap;
//! - every scheduled request is accounted for: `offered = accepted + rejected` (503s) and
//!   `accepted = completed + failed + cancelled` (cancelled: never sent, because every
//!   connection stayed busy until the run's time bound); `lost` must be 0.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::http_load::{self, ClosedLoop, LoadReport, OpenLoop, Target};
use crate::rss::{self, RssSampler, RssSeries};
use crate::scenario_json::{LatencyMs, Machine, Scenario, SeriesPoint, StrategyResult};
use crate::server::LayerChoice;
use crate::table::{num, Align, Table};
use crate::work::WorkKind;

/// Arguments of `surgepool-lab http`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// `quick` (about a minute) or `smoke` (a few seconds, low rate: for CI).
    #[arg(long, value_enum, default_value = "quick")]
    preset: Preset,
    /// What `/work` spends its time on.
    #[arg(long, value_enum, default_value = "sleep")]
    work: WorkKind,
    /// Time `/work` takes, in milliseconds.
    #[arg(long, default_value_t = 20)]
    service_ms: u64,
    /// Memory `/work` allocates and touches, in KiB.
    #[arg(long, default_value_t = 500)]
    alloc_kb: usize,
    /// The latency SLO in ms, from intended send time (default: 3 × the service time).
    #[arg(long)]
    slo_ms: Option<f64>,
    /// The layered server's admission layer: `adaptive` or `fixed:<N>`.
    #[arg(long, default_value = "adaptive")]
    layer: LayerChoice,
    /// Offered load as a multiple of the layered server's measured capacity.
    #[arg(long, default_value_t = 3.0)]
    overload: f64,
    /// Offered load in requests/s (overrides --overload; skips the capacity probe's use).
    #[arg(long)]
    rps: Option<f64>,
    /// Seconds of open-loop load per server (default: from the preset).
    #[arg(long)]
    duration_s: Option<f64>,
    /// Most connections the open-loop generator opens (each carries one request at a time).
    #[arg(long)]
    connections: Option<usize>,
    /// Clients of the closed-loop capacity probe (default: from the preset). It must keep more
    /// requests in flight than the layered server admits, or it measures itself.
    #[arg(long)]
    probe_connections: Option<usize>,
    /// Clients of the closed-loop `/hello` overhead runs.
    #[arg(long, default_value_t = 8)]
    hello_connections: usize,
    /// Per-request deadline of the generator, in milliseconds (no request waits longer).
    #[arg(long, default_value_t = 5_000)]
    deadline_ms: u64,
    /// Stop a server whose RSS passes this many MiB.
    #[arg(long, default_value_t = 4_096)]
    mem_cap_mb: u64,
    /// Aim the open-loop generator at this server instead (loopback only), e.g.
    /// `http://127.0.0.1:8080/work`; needs --rps.
    #[arg(long)]
    target: Option<String>,
    /// With --target: a cheap path to request once on every connection before the clock
    /// starts (e.g. `/hello`), so the run does not measure first-use costs.
    #[arg(long)]
    warm_path: Option<String>,
    /// Write the results as JSON (API.md's shape) to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Preset {
    Quick,
    Smoke,
}

/// The run's sizes, from the preset and the flags.
#[derive(Debug, Clone)]
struct Plan {
    duration: Duration,
    warmup: Duration,
    probe: Duration,
    hello: Duration,
    hello_rounds: usize,
    connections: usize,
    probe_connections: usize,
    max_rps: f64,
}

impl Args {
    /// The SLO: `--slo-ms`, or 3 × the service time.
    fn slo(&self) -> anyhow::Result<Duration> {
        let ms = self.slo_ms.unwrap_or(3.0 * self.service_ms as f64);
        ensure!(
            ms.is_finite() && ms > 0.0 && ms <= 3_600_000.0,
            "--slo-ms must be above 0 and at most 3600000, got {ms}"
        );
        Ok(Duration::from_secs_f64(ms / 1000.0))
    }

    fn plan(&self) -> anyhow::Result<Plan> {
        ensure!(
            self.overload.is_finite() && self.overload > 0.0,
            "--overload must be above 0"
        );
        if let Some(rps) = self.rps {
            ensure!(rps.is_finite() && rps > 0.0, "--rps must be above 0");
        }
        ensure!(self.deadline_ms > 0, "--deadline-ms must be at least 1");
        ensure!(
            self.probe_connections != Some(0) && self.hello_connections > 0,
            "connection counts must be at least 1"
        );
        let mut plan = match self.preset {
            Preset::Quick => Plan {
                duration: Duration::from_secs(10),
                warmup: Duration::from_secs(1),
                probe: Duration::from_secs(3),
                // Short alternating rounds, median: other processes' noise hits both alike.
                hello: Duration::from_millis(1_500),
                hello_rounds: 5,
                connections: 2_048,
                probe_connections: 512,
                max_rps: 50_000.0,
            },
            Preset::Smoke => Plan {
                duration: Duration::from_millis(1_500),
                warmup: Duration::from_millis(300),
                probe: Duration::from_millis(700),
                hello: Duration::from_millis(500),
                hello_rounds: 1,
                connections: 64,
                probe_connections: 16,
                max_rps: 300.0,
            },
        };
        if let Some(d) = self.duration_s {
            ensure!(
                d.is_finite() && d > 0.0 && d <= 600.0,
                "--duration-s must be in (0, 600]"
            );
            plan.duration = Duration::from_secs_f64(d);
        }
        if let Some(c) = self.connections {
            ensure!(
                (1..=16_384).contains(&c),
                "--connections must be in 1..=16384"
            );
            plan.connections = c;
        }
        if let Some(c) = self.probe_connections {
            ensure!(c <= 16_384, "--probe-connections must be at most 16384");
            plan.probe_connections = c;
        }
        Ok(plan)
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let plan = args.plan()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let output = match &args.target {
        Some(url) => runtime.block_on(run_target(&args, &plan, url))?,
        None => {
            ensure!(
                args.layer != LayerChoice::None,
                "--layer is the layered server's layer: adaptive or fixed:<N> (the bare server always runs too)"
            );
            runtime.block_on(run_children(&args, &plan))?
        }
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&output)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// `--target URL`: the generator alone, against someone else's server.
async fn run_target(args: &Args, plan: &Plan, url: &str) -> anyhow::Result<Value> {
    let target = Target::parse_loopback(url)?;
    let Some(rps) = args.rps else {
        bail!("--target needs --rps (the generator cannot probe another server's capacity)");
    };
    eprintln!(
        "open loop: {rps:.0} requests/s for {:.1} s against {}",
        plan.duration.as_secs_f64(),
        target.url()
    );
    let report = http_load::open_loop(OpenLoop {
        target: target.clone(),
        rate: rps,
        duration: plan.duration,
        connections: plan.connections,
        deadline: Duration::from_millis(args.deadline_ms),
        warm_path: args.warm_path.clone(),
        slo: args.slo()?,
    })
    .await?;
    let result = strategy_result("target", &report, None, &Value::Null, rps, args.slo()?);
    print_table(&[(&result, &report)]);
    let base = format!("http://{}", target.host);
    print_wrk(&base, &target, rps, plan, args.hello_connections);
    let scenario = json!({
        "preset": preset_name(args.preset), "target": target.url(), "offered_rps": rps,
        "duration_s": plan.duration.as_secs_f64(), "connections": plan.connections,
        "deadline_ms": args.deadline_ms,
    });
    Ok(json!({
        "scenario": scenario,
        "strategies": [strategy_json(&result, &report, &Value::Null)],
        "machine": machine(),
    }))
}

fn preset_name(preset: Preset) -> &'static str {
    match preset {
        Preset::Quick => "quick",
        Preset::Smoke => "smoke",
    }
}

fn machine() -> Machine {
    Machine {
        cores: crate::machine::cores(),
        memory_bytes: rss::total_memory_bytes().unwrap_or(0),
    }
}

async fn run_children(args: &Args, plan: &Plan) -> anyhow::Result<Value> {
    let deadline = Duration::from_millis(args.deadline_ms);
    let mem_cap = args.mem_cap_mb.saturating_mul(1024 * 1024);

    // 1. The layered server: warm up, probe its capacity, then overload it.
    let mut layered = ServerChild::start(args, args.layer)?;
    let work = layered.target.with_path("/work");
    eprintln!(
        "layered server ({}) on {}: warm-up and capacity probe",
        args.layer,
        layered.target.url()
    );
    let probe = |duration| ClosedLoop {
        target: work.clone(),
        connections: plan.probe_connections,
        duration,
        deadline,
    };
    http_load::closed_loop(probe(plan.warmup)).await?;
    let capacity = http_load::closed_loop(probe(plan.probe)).await?.ok_rps();
    ensure!(
        capacity > 0.0,
        "the layered server completed nothing in the capacity probe"
    );
    let rate = args
        .rps
        .unwrap_or(capacity * args.overload)
        .min(plan.max_rps);
    eprintln!(
        "capacity {capacity:.0} requests/s; open loop at {rate:.0} requests/s ({:.1}x) for {:.1} s, up to {} connections",
        rate / capacity,
        plan.duration.as_secs_f64(),
        plan.connections
    );
    let spec = OpenLoop {
        target: work.clone(),
        rate,
        duration: plan.duration,
        connections: plan.connections,
        deadline,
        // `/stats` is outside the admission layer: warming the connections through the
        // layer would feed an adaptive limit samples of another endpoint's latency.
        warm_path: Some("/stats".to_owned()),
        slo: args.slo()?,
    };
    let (layered_report, layered_mem) = layered.drive(spec.clone(), mem_cap).await?;
    let layered_stats = layered.stats().await;
    layered.stop();

    // 2. The bare server, same schedule.
    let mut bare = ServerChild::start(args, LayerChoice::None)?;
    eprintln!(
        "bare server on {}: open loop at {rate:.0} requests/s",
        bare.target.url()
    );
    let spec = OpenLoop {
        target: bare.target.with_path("/work"),
        ..spec
    };
    let (bare_report, bare_mem) = bare.drive(spec, mem_cap).await?;
    let bare_stats = if bare_mem.stopped_at_s.is_some() {
        Value::Null
    } else {
        bare.stats().await
    };
    bare.stop();

    // 3. Overhead: `/hello` at full speed, bare vs layered, alternating rounds.
    eprintln!(
        "hello: closed loop, {} clients, {} round(s) of {:.1} s per server",
        args.hello_connections,
        plan.hello_rounds,
        plan.hello.as_secs_f64()
    );
    let hello_bare = ServerChild::start(args, LayerChoice::None)?;
    let hello_layered = ServerChild::start(args, args.layer)?;
    let (mut bare_rps, mut layered_rps) = (Vec::new(), Vec::new());
    let mut hello_statuses: BTreeMap<&str, BTreeMap<u16, u64>> = BTreeMap::new();
    // One uncounted warm-up round each (fresh processes, cold caches), then alternating
    // rounds, so other processes' noise falls on both servers alike.
    for child in [&hello_bare, &hello_layered] {
        http_load::closed_loop(ClosedLoop {
            target: child.target.with_path("/hello"),
            connections: args.hello_connections,
            duration: plan.hello,
            deadline,
        })
        .await?;
    }
    for _ in 0..plan.hello_rounds {
        for (name, child, out) in [
            ("bare", &hello_bare, &mut bare_rps),
            ("layered", &hello_layered, &mut layered_rps),
        ] {
            let r = http_load::closed_loop(ClosedLoop {
                target: child.target.with_path("/hello"),
                connections: args.hello_connections,
                duration: plan.hello,
                deadline,
            })
            .await?;
            out.push(r.ok_rps());
            let counts = hello_statuses.entry(name).or_default();
            for (code, n) in r.statuses {
                *counts.entry(code).or_default() += n;
            }
        }
    }
    hello_bare.stop();
    hello_layered.stop();
    // Best of the rounds: on a shared machine the least disturbed round is the closest to
    // what each server can do; the medians are reported beside it.
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (bare_hello, layered_hello) = (best(&bare_rps), best(&layered_rps));
    let (bare_median, layered_median) = (
        median(&mut bare_rps.clone()),
        median(&mut layered_rps.clone()),
    );

    let slo = args.slo()?;
    let bare_result = strategy_result(
        "bare",
        &bare_report,
        Some(&bare_mem),
        &bare_stats,
        rate,
        slo,
    );
    let layered_result = strategy_result(
        "layered",
        &layered_report,
        Some(&layered_mem),
        &layered_stats,
        rate,
        slo,
    );
    print_table(&[
        (&bare_result, &bare_report),
        (&layered_result, &layered_report),
    ]);
    print_growth(&bare_result, &layered_result);
    println!(
        "\nhello_rps (closed loop, {} clients, best of {} alternating rounds): bare {bare_hello:.0}, layered {layered_hello:.0} ({:+.1}%); medians {bare_median:.0} and {layered_median:.0} ({:+.1}%)",
        args.hello_connections,
        plan.hello_rounds,
        (layered_hello / bare_hello - 1.0) * 100.0,
        (layered_median / bare_median - 1.0) * 100.0
    );
    print_goals(
        args,
        &Results {
            capacity,
            rate,
            layered: &layered_report,
            bare: &bare_result,
            hello: (bare_hello, layered_hello),
        },
    );
    // The children are gone by now: point at a `serve` instance on its default address.
    print_wrk(
        "http://127.0.0.1:8080",
        &work,
        rate,
        plan,
        args.hello_connections,
    );

    let scenario = Scenario {
        preset: preset_name(args.preset).to_owned(),
        work: args.work.name().to_owned(),
        offered_rps: rate.round() as u64,
        duration_s: plan.duration.as_secs_f64(),
        service_ms: args.service_ms,
        alloc_kb: args.alloc_kb as u64,
        mem_cap_bytes: mem_cap,
        drain_s: 0.0,
        worker_threads: crate::machine::cores(),
        slo_ms: args.slo()?.as_secs_f64() * 1000.0,
        kind: String::new(),
    };
    let mut scenario = serde_json::to_value(scenario)?;
    scenario["layer"] = json!(args.layer.to_string());
    scenario["capacity_rps"] = json!(capacity);
    scenario["overload"] = json!(rate / capacity);
    scenario["connections"] = json!(plan.connections);
    scenario["probe_connections"] = json!(plan.probe_connections);
    scenario["deadline_ms"] = json!(args.deadline_ms);
    let hello_counts: serde_json::Map<String, Value> = hello_statuses
        .iter()
        .map(|(k, v)| ((*k).to_owned(), counts_json(v)))
        .collect();
    Ok(json!({
        "scenario": scenario,
        "strategies": [
            strategy_json(&bare_result, &bare_report, &bare_stats),
            strategy_json(&layered_result, &layered_report, &layered_stats),
        ],
        "hello_rps": {"bare": bare_hello, "layered": layered_hello,
                      "method": "best of alternating closed-loop rounds after one warm-up round each",
                      "median": {"bare": bare_median, "layered": layered_median},
                      "rounds": {"bare": bare_rps, "layered": layered_rps},
                      "status_counts": hello_counts},
        "machine": machine(),
    }))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// A `surgepool-lab serve` child process on 127.0.0.1 with a free port.
struct ServerChild {
    child: Child,
    target: Target,
}

impl ServerChild {
    fn start(args: &Args, layer: LayerChoice) -> anyhow::Result<ServerChild> {
        let exe = std::env::current_exe().context("finding the lab's own executable")?;
        let mut child = Command::new(exe)
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--layer",
                &layer.to_string(),
            ])
            .args(["--work", args.work.name()])
            .args(["--service-ms", &args.service_ms.to_string()])
            .args(["--alloc-kb", &args.alloc_kb.to_string()])
            .args(["--drain-timeout-s", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the server child process")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(str::to_owned);
        let Some(url) = url else {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            let _ = child.wait();
            bail!("the server child did not start: {}", err.trim());
        };
        Ok(ServerChild {
            child,
            target: Target::parse_loopback(&url)?,
        })
    }

    /// Runs the open loop against this server while sampling its RSS; kills it if the RSS
    /// passes `mem_cap` (the load goes on, and fails fast, so the run stays bounded).
    async fn drive(
        &mut self,
        spec: OpenLoop,
        mem_cap: u64,
    ) -> anyhow::Result<(LoadReport, Memory)> {
        let pid = self.child.id();
        let sampler =
            RssSampler::start(rss::Target::Pid(pid)).context("sampling the server's RSS")?;
        let started = Instant::now();
        let done = AtomicBool::new(false);
        let mut stopped_at_s = None;
        let watch = async {
            while !done.load(Ordering::Relaxed) {
                if sampler.latest() > mem_cap {
                    stopped_at_s = Some(started.elapsed().as_secs_f64());
                    let _ = self.child.kill();
                    return;
                }
                tokio::time::sleep(rss::SAMPLE_EVERY).await;
            }
        };
        let load = async {
            let report = http_load::open_loop(spec).await;
            done.store(true, Ordering::Relaxed);
            report
        };
        let (report, ()) = tokio::join!(load, watch);
        Ok((
            report?,
            Memory {
                rss: sampler.finish(),
                stopped_at_s,
            },
        ))
    }

    async fn stats(&self) -> Value {
        let target = self.target.with_path("/stats");
        match fetch(&target).await {
            Ok(body) => serde_json::from_str(&body).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// SIGTERM (the server drains), then a kill if it is still there after 3 s.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        // Never leave a server behind, even on an error path.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn fetch(target: &Target) -> anyhow::Result<String> {
    use http_body_util::{BodyExt, Empty};
    let stream = tokio::net::TcpStream::connect(target.addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = http::Request::get(target.path.as_str())
        .header(http::header::HOST, target.host.as_str())
        .body(Empty::<hyper::body::Bytes>::new())?;
    let response =
        tokio::time::timeout(Duration::from_secs(5), sender.send_request(request)).await??;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The server's memory over a run.
#[derive(Debug, Default)]
struct Memory {
    rss: RssSeries,
    /// Seconds into the run when the RSS passed the cap and the server was killed.
    stopped_at_s: Option<f64>,
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

fn latency_ms(h: &Histogram<u64>) -> LatencyMs {
    if h.is_empty() {
        return LatencyMs::default();
    }
    LatencyMs {
        mean: h.mean() / 1000.0,
        p50: ms(h, 0.5),
        p99: ms(h, 0.99),
        p999: ms(h, 0.999),
        max: h.max() as f64 / 1000.0,
    }
}

fn counts_json(counts: &BTreeMap<u16, u64>) -> Value {
    Value::Object(
        counts
            .iter()
            .map(|(c, n)| (c.to_string(), json!(n)))
            .collect(),
    )
}

/// API.md's fields for one server, from what the generator saw.
///
/// `offered` is the schedule; `rejected` the 503s; `accepted = offered - rejected`, which
/// splits into `completed` (2xx), `failed` (other statuses, connection errors, deadline
/// timeouts) and `cancelled` (never sent: every connection stayed busy until the run's time
/// bound). `lost` is what the independent counters fail to explain; it must be 0.
fn strategy_result(
    name: &str,
    r: &LoadReport,
    mem: Option<&Memory>,
    server: &Value,
    asked_rps: f64,
    slo: Duration,
) -> StrategyResult {
    let rejected = r.status(503);
    let completed = r.ok();
    let answered: u64 = r.statuses.values().sum();
    let failed = answered - completed - rejected + r.errors + r.timeouts;
    let accepted = r.offered - rejected;
    let explained = completed + failed + r.unsent;
    let mut notes = Vec::new();
    if explained != accepted {
        notes.push(format!(
            "completed + failed + cancelled = {explained}, accepted = {accepted}"
        ));
    }
    let stopped_at_s = mem.and_then(|m| m.stopped_at_s);
    let ran_s = stopped_at_s.unwrap_or(r.elapsed.as_secs_f64());
    let admission = &server["admission"];
    let config = match admission["limit"].as_u64() {
        Some(limit) => format!(
            "{} layer, limit {limit} at the end",
            server["layer"].as_str().unwrap_or("admission")
        ),
        None => "no layer".to_owned(),
    };
    let series = r
        .ok_by_second
        .iter()
        .enumerate()
        .map(|(second, h)| SeriesPoint {
            t_s: second as f64 + 1.0,
            goodput_rps: h.len() as f64,
            slo_goodput_rps: r
                .ok_within_slo_by_second
                .get(second)
                .map_or(0.0, |&n| n as f64),
            in_flight: 0,
            limit: 0,
            rss_bytes: mem
                .and_then(|m| {
                    m.rss
                        .points
                        .iter()
                        .find(|p| p.t_s >= second as f64 + 1.0)
                        .map(|p| p.bytes)
                })
                .unwrap_or(0),
            p50_ms: ms(h, 0.5),
            p99_ms: ms(h, 0.99),
        })
        .collect();
    StrategyResult {
        name: name.to_owned(),
        offered: r.offered,
        achieved_rps: r.achieved_rps(),
        accepted,
        rejected,
        completed,
        failed,
        shed: 0,
        cancelled: r.unsent,
        lost: accepted.abs_diff(explained),
        goodput_rps: completed as f64 / ran_s.max(1e-9),
        slo_ms: slo.as_secs_f64() * 1000.0,
        slo_goodput_rps: r.ok_within_slo as f64 / ran_s.max(1e-9),
        within_slo: r.ok_within_slo,
        peak_rss_bytes: mem.map_or(0, |m| m.rss.peak),
        stopped_at_cap: stopped_at_s.is_some(),
        ran_s,
        latency_ms: latency_ms(&r.ok_latency),
        config,
        asked_rps,
        scheduled: r.offered,
        generator_lag_ms: 0.0,
        stopped_at_cap_after_s: stopped_at_s,
        timed_out: false,
        rejection_latency_ms: latency_ms(&r.shed_from_intended),
        final_limit: admission["limit"].as_u64().unwrap_or(0),
        accounting_notes: notes,
        series,
        phases: Vec::new(),
    }
}

/// The typed fields, plus the HTTP extras: status codes, errors, timeouts, the server's own
/// counters, and latencies measured from the actual send.
fn strategy_json(result: &StrategyResult, r: &LoadReport, server: &Value) -> Value {
    let mut v = serde_json::to_value(result).unwrap_or(Value::Null);
    v["status_counts"] = counts_json(&r.statuses);
    v["errors"] = json!(r.errors);
    v["timeouts"] = json!(r.timeouts);
    v["unsent"] = json!(r.unsent);
    v["service_latency_ms"] = json!(latency_ms(&r.ok_service));
    v["shed_service_latency_ms"] = json!(latency_ms(&r.shed_latency));
    v["server"] = server.clone();
    v
}

fn print_table(rows: &[(&StrategyResult, &LoadReport)]) {
    let mut table = Table::new(&[
        ("server", Align::Left),
        ("offered", Align::Right),
        ("achieved/s", Align::Right),
        ("completed", Align::Right),
        ("503", Align::Right),
        ("failed", Align::Right),
        ("never sent", Align::Right),
        ("lost", Align::Right),
        ("mean ms", Align::Right),
        ("p50 ms", Align::Right),
        ("p99 ms", Align::Right),
        ("max ms", Align::Right),
        ("goodput/s", Align::Right),
        ("peak RSS", Align::Right),
    ]);
    for (s, _) in rows {
        let rss = match s.stopped_at_cap_after_s {
            Some(t) => format!("cap at {t:.1} s"),
            None if s.peak_rss_bytes == 0 => "-".to_owned(),
            None => format!("{} MiB", num(s.peak_rss_bytes as f64 / 1048576.0)),
        };
        table.push(vec![
            s.name.clone(),
            s.offered.to_string(),
            num(s.achieved_rps),
            s.completed.to_string(),
            s.rejected.to_string(),
            s.failed.to_string(),
            s.cancelled.to_string(),
            s.lost.to_string(),
            num(s.latency_ms.mean),
            num(s.latency_ms.p50),
            num(s.latency_ms.p99),
            num(s.latency_ms.max),
            num(s.goodput_rps),
            rss,
        ]);
    }
    println!("\n{table}");
    for (s, r) in rows {
        let codes: Vec<String> = r
            .statuses
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        println!(
            "{:<8} status codes {{{}}}, connection errors {}, deadline timeouts {}",
            s.name,
            codes.join(", "),
            r.errors,
            r.timeouts,
        );
        println!(
            "{:<8} from the actual send: 2xx p50 {} ms, p99 {} ms; 503 p50 {} ms, p99 {} ms",
            "",
            num(ms(&r.ok_service, 0.5)),
            num(ms(&r.ok_service, 0.99)),
            num(ms(&r.shed_latency, 0.5)),
            num(ms(&r.shed_latency, 0.99)),
        );
    }
}

fn print_growth(bare: &StrategyResult, layered: &StrategyResult) {
    let p99 = |s: &StrategyResult| {
        s.series
            .iter()
            .map(|p| {
                if p.goodput_rps > 0.0 {
                    num(p.p99_ms)
                } else {
                    "-".to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rss = |s: &StrategyResult| {
        s.series
            .iter()
            .map(|p| num(p.rss_bytes as f64 / 1048576.0))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("\nover time (one value per second of the schedule):");
    println!("  bare    2xx p99 ms: {}", p99(bare));
    println!("  layered 2xx p99 ms: {}", p99(layered));
    println!("  bare    RSS MiB:    {}", rss(bare));
    println!("  layered RSS MiB:    {}", rss(layered));
}

/// What the goals are judged on.
struct Results<'a> {
    capacity: f64,
    rate: f64,
    layered: &'a LoadReport,
    bare: &'a StrategyResult,
    /// (bare, layered) hello requests/s.
    hello: (f64, f64),
}

fn print_goals(args: &Args, results: &Results<'_>) {
    let Results {
        capacity,
        rate,
        layered,
        bare,
        hello: (bare_hello, layered_hello),
    } = *results;
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let service = args.service_ms as f64;
    let p99 = ms(&layered.ok_latency, 0.99);
    let goodput = layered.ok() as f64 / layered.elapsed.as_secs_f64().max(1e-9);
    let shed_p99 = ms(&layered.shed_latency, 0.99);
    let overhead = 1.0 - layered_hello / bare_hello;
    println!("\ngoals:");
    if rate < capacity {
        println!("  (offered load below the measured capacity: the overload goals do not apply to this run)");
    }
    println!(
        "  layered p99 {} ms <= 3 x {service} ms: {}",
        num(p99),
        verdict(p99 <= 3.0 * service)
    );
    println!(
        "  layered goodput {}/s >= 0.9 x capacity {}/s: {}",
        num(goodput),
        num(capacity),
        verdict(goodput >= 0.9 * capacity)
    );
    println!(
        "  503s answered within 1 ms at p99 (from the actual send: {} ms): {}",
        num(shed_p99),
        verdict(layered.status(503) > 0 && shed_p99 <= 1.0)
    );
    let answered: Vec<&SeriesPoint> = bare.series.iter().filter(|p| p.goodput_rps > 0.0).collect();
    let (first, last) = (answered.first(), answered.last());
    println!(
        "  bare server under the same load: 2xx p99 {} ms in its first second -> {} ms in its last, peak RSS {} MiB{}, {} deadline timeouts",
        first.map_or("-".to_owned(), |p| num(p.p99_ms)),
        last.map_or("-".to_owned(), |p| num(p.p99_ms)),
        num(bare.peak_rss_bytes as f64 / 1048576.0),
        if bare.stopped_at_cap { " (stopped at the cap)" } else { "" },
        bare.failed,
    );
    println!(
        "  hello overhead {:.1}% <= 5%: {}",
        overhead * 100.0,
        verdict(overhead <= 0.05)
    );
    println!(
        "  no request hangs: each got a response, an error or its {} ms deadline ({} deadline timeouts at the layered server)",
        args.deadline_ms, layered.timeouts
    );
}

fn print_wrk(base: &str, target: &Target, rate: f64, plan: &Plan, hello_connections: usize) {
    println!(
        "\nthe same load with wrk2 (open loop; latency from intended send time):\n  wrk2 -t2 -c{} -d{}s -R{:.0} --latency {base}{}",
        plan.connections.min(1000),
        plan.duration.as_secs().max(1),
        rate,
        target.path
    );
    println!(
        "the hello closed loop with wrk:\n  wrk -t2 -c{hello_connections} -d{}s {base}/hello",
        plan.hello.as_secs().max(1)
    );
    if base == "http://127.0.0.1:8080" {
        println!("(run a server for them with: surgepool-lab serve --layer adaptive --addr 127.0.0.1:8080)");
    }
}
