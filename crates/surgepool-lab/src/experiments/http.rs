//! `surgepool-lab http`: seeds 001/002 over real HTTP. The lab's axum server runs in child
//! processes on 127.0.0.1, once bare and once behind `surgepool_tower::AdmissionLayer`; our
//! open-loop generator drives each at a multiple of the bare server's capacity (or an absolute
//! `--rps`), and a closed loop on `/hello` measures the layer's overhead at full speed.
//!
//! Method (DESIGN.md, "Honest measurement"):
//! - capacity: the **bare** server's goodput (2xx/s on `/work`) in a closed loop with
//!   `--probe-connections` clients, the median of `--probes` short probes after a warm-up.
//!   The bare server, because capacity is the machine's, not the limiter's: probing the
//!   layered server measured its adaptive limit's state of the moment (2,049 req/s in one
//!   quiet run, 15,598 in another), and "3× overload" drifted with it. The median, because
//!   one probe disturbed by another process must not set the rate. `--rps` states the rate
//!   in absolute terms instead;
//! - overload: every server gets the same open-loop schedule at `--overload ×` that capacity
//!   (or `--rps`), after the same closed-loop warm-up; latency runs from each request's
//!   intended send time to the end of its body, and **SLO goodput** counts the 2xx responses
//!   within `--slo-ms` (default 3 × the service time) of it, per second;
//! - `--sweep`: the same schedule against a server per `fixed:<N>` layer (`fixed_<N>`), so
//!   the layered server is judged against the best fixed layer of the same run;
//! - CPU: each server's user + system CPU seconds over its open loop, and the generator's
//!   (this process), from `/proc`: the loopback client shares the machine, and this says
//!   how much of it each side took;
//! - memory: the child's RSS from `/proc` ([`crate::rss`], 20 samples a second); a child past
//!   `--mem-cap-mb` is killed and reported as stopped at the cap;
//! - every scheduled request is accounted for: `offered = accepted + rejected` (503s) and
//!   `accepted = completed + failed + cancelled` (cancelled: never sent, because every
//!   connection stayed busy until the run's time bound); `lost` must be 0.
//!
//! The lab's server puts `/work` and `/hello` behind **one** layer (one limit for every
//! route, as `serve` documents); it does not give each latency class its own. This
//! experiment never mixes them: the open loops load `/work` alone and the `/hello` rounds run
//! against servers of their own, so the limit only ever sees one latency class here.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use hyper::body::Bytes;
use serde_json::{json, Value};

mod cpu;
mod goals;
mod hello;
mod results;
mod runs;
mod server_child;

use self::results::{median, print_growth, print_table, strategy_json, strategy_result};
use self::runs::{drive, run_server, Run};
use self::server_child::ServerChild;
use crate::http_load::{self, ClosedLoop, LoadReport, OpenLoop, RequestTemplate, Target};
use crate::rss;
use crate::scenario_json::{Machine, Scenario, ScenarioReport, StrategyResult};
use crate::server::LayerChoice;
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
    /// Offered load in requests/s, in absolute terms (overrides --overload; the capacity is
    /// still probed and reported).
    #[arg(long)]
    rps: Option<f64>,
    /// Seconds of open-loop load per server (default: from the preset).
    #[arg(long)]
    duration_s: Option<f64>,
    /// Most connections the open-loop generator opens (each carries one request at a time).
    #[arg(long)]
    connections: Option<usize>,
    /// Short closed-loop probes of the bare server's capacity; their median is the capacity
    /// (default: from the preset).
    #[arg(long)]
    probes: Option<usize>,
    /// Also run the same schedule against a server per `fixed:<N>` layer (`fixed_<N>`).
    #[arg(long)]
    sweep: bool,
    /// The limits `--sweep` runs, comma-separated (default: 16, 32, ..., 2048).
    #[arg(long, value_delimiter = ',')]
    sweep_limits: Option<Vec<usize>>,
    /// Seconds of open-loop load per swept layer (default: from the preset).
    #[arg(long)]
    sweep_duration_s: Option<f64>,
    /// Write an HTML report (index.html with charts) into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Clients of the closed-loop capacity probe (default: from the preset). It must keep more
    /// requests in flight than the server can finish, or it measures itself.
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
    /// With --target: the request method (`POST` with --body, say).
    #[arg(long, default_value = "GET")]
    method: http::Method,
    /// With --target: the body every request carries (e.g. a JSON order).
    #[arg(long)]
    body: Option<String>,
    /// With --target: the body's content type.
    #[arg(long, default_value = "application/json")]
    content_type: String,
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
    probes: usize,
    sweep_duration: Duration,
    hello: Duration,
    hello_rounds: usize,
    connections: usize,
    probe_connections: usize,
    max_rps: f64,
}

impl Args {
    /// The request `--target` runs send: `--method`, `--body`, `--content-type`.
    fn request_template(&self) -> anyhow::Result<RequestTemplate> {
        let content_type = match &self.body {
            Some(_) => Some(
                http::HeaderValue::from_str(&self.content_type).with_context(|| {
                    format!(
                        "--content-type {:?} is not a header value",
                        self.content_type
                    )
                })?,
            ),
            None => None,
        };
        Ok(RequestTemplate {
            method: self.method.clone(),
            body: self.body.clone().map(Bytes::from).unwrap_or_default(),
            content_type,
        })
    }

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
                probe: Duration::from_millis(600),
                probes: 5,
                sweep_duration: Duration::from_secs(5),
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
                probe: Duration::from_millis(250),
                probes: 3,
                sweep_duration: Duration::from_millis(1_000),
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
        if let Some(n) = self.probes {
            ensure!((1..=100).contains(&n), "--probes must be in 1..=100");
            plan.probes = n;
        }
        if let Some(d) = self.sweep_duration_s {
            ensure!(
                d.is_finite() && d > 0.0 && d <= 600.0,
                "--sweep-duration-s must be in (0, 600]"
            );
            plan.sweep_duration = Duration::from_secs_f64(d);
        }
        if let Some(limits) = &self.sweep_limits {
            ensure!(
                limits.iter().all(|&n| n >= 1),
                "--sweep-limits must all be at least 1"
            );
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
    ensure!(
        args.target.is_some() || (args.method == http::Method::GET && args.body.is_none()),
        "--method and --body need --target (the lab's own server is loaded with GET /work)"
    );
    args.request_template()?;
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
        request: args.request_template()?,
    })
    .await?;
    let result = strategy_result("target", &report, None, &Value::Null, rps, args.slo()?);
    print_table(&[(&result, &report)]);
    if args.body.is_none() && args.method == http::Method::GET {
        let base = format!("http://{}", target.host);
        print_wrk(&base, &target, rps, plan, args.hello_connections);
    }
    let scenario = json!({
        "preset": preset_name(args.preset), "target": target.url(), "offered_rps": rps,
        "duration_s": plan.duration.as_secs_f64(), "connections": plan.connections,
        "deadline_ms": args.deadline_ms, "method": args.method.as_str(),
        "body_bytes": args.body.as_ref().map_or(0, String::len),
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
    let slo = args.slo()?;

    // 1. The bare server: warm up, then the median of several short probes of its capacity.
    let mut bare = ServerChild::start(args, LayerChoice::None)?;
    let work = bare.target.with_path("/work");
    eprintln!(
        "bare server on {}: warm-up, then {} capacity probes of {:.1} s",
        bare.target.url(),
        plan.probes,
        plan.probe.as_secs_f64()
    );
    let probe = |duration| ClosedLoop {
        target: work.clone(),
        connections: plan.probe_connections,
        duration,
        deadline,
    };
    http_load::closed_loop(probe(plan.warmup)).await?;
    let mut probes = Vec::with_capacity(plan.probes);
    for _ in 0..plan.probes {
        probes.push(http_load::closed_loop(probe(plan.probe)).await?.ok_rps());
    }
    let capacity = median(&mut probes.clone());
    ensure!(
        capacity > 0.0,
        "the bare server completed nothing in the capacity probes"
    );
    let rate = args
        .rps
        .unwrap_or(capacity * args.overload)
        .min(plan.max_rps);
    eprintln!(
        "capacity {capacity:.0} requests/s (median of {}); open loop at {rate:.0} requests/s ({:.1}x) for {:.1} s, up to {} connections",
        probes.iter().map(|p| format!("{p:.0}")).collect::<Vec<_>>().join(", "),
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
        slo,
        request: RequestTemplate::default(),
    };
    // The bare server is warm already: its open loop follows the probes.
    let bare_run = drive(args, "bare", &mut bare, spec.clone()).await;
    bare.stop();
    let bare_run = bare_run?;

    // 2. The layered server, same schedule.
    let layered = run_server(args, plan, "layered", args.layer, &spec).await?;

    // 3. The sweep: one server per fixed layer, same rate, `--sweep-duration-s` each.
    let mut swept = Vec::new();
    if args.sweep {
        let limits = args
            .sweep_limits
            .clone()
            .unwrap_or_else(|| match args.preset {
                Preset::Quick => (4..=11).map(|p| 1usize << p).collect(),
                Preset::Smoke => vec![2, 16],
            });
        let sweep_spec = OpenLoop {
            duration: plan.sweep_duration,
            ..spec.clone()
        };
        for n in limits {
            let name = format!("fixed_{n}");
            swept.push(run_server(args, plan, &name, LayerChoice::Fixed(n), &sweep_spec).await?);
        }
    }

    // 4. Overhead: `/hello` at full speed, bare vs layered, alternating rounds.
    let hello = hello::rounds(args, plan, deadline).await?;

    let runs: Vec<&Run> = [&bare_run, &layered].into_iter().chain(&swept).collect();
    let rows: Vec<(&StrategyResult, &LoadReport)> =
        runs.iter().map(|r| (&r.result, &r.report)).collect();
    print_table(&rows);
    print_growth(&bare_run.result, &layered.result);
    println!(
        "\nhello_rps (closed loop, {} clients, best of {} alternating rounds): bare {:.0}, layered {:.0} ({:+.1}%); medians {:.0} and {:.0} ({:+.1}%)",
        args.hello_connections,
        plan.hello_rounds,
        hello.bare,
        hello.layered,
        (hello.layered / hello.bare - 1.0) * 100.0,
        hello.bare_median,
        hello.layered_median,
        (hello.layered_median / hello.bare_median - 1.0) * 100.0
    );
    let judged = goals::Judged {
        capacity,
        rate,
        service_ms: args.service_ms as f64,
        bare: &bare_run.result,
        layered: &layered.result,
        layered_report: &layered.report,
        swept: swept.iter().map(|r| &r.result).collect(),
        hello: (hello.bare, hello.layered),
    };
    let goals = goals::check(&judged);
    goals::print(&goals, &judged, args.deadline_ms);
    println!(
        "\nthe lab's server puts /work and /hello behind one layer; this run loads /work alone, \
         so the limit saw one latency class"
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
        mem_cap_bytes: args.mem_cap_mb.saturating_mul(1024 * 1024),
        drain_s: 0.0,
        worker_threads: crate::machine::cores(),
        slo_ms: slo.as_secs_f64() * 1000.0,
        kind: String::new(),
    };
    if let Some(dir) = &args.report {
        let report = ScenarioReport {
            scenario: scenario.clone(),
            strategies: runs.iter().map(|r| r.result.clone()).collect(),
            machine: machine(),
            goals: goals.clone(),
        };
        let path = crate::report::write_overload(
            dir,
            &report,
            &results::cells(&rows),
            "surgepool-lab http: the admission layer over loopback",
        )?;
        eprintln!("wrote {}", path.display());
    }
    let mut scenario = serde_json::to_value(scenario)?;
    scenario["layer"] = json!(args.layer.to_string());
    scenario["capacity_rps"] = json!(capacity);
    scenario["capacity_probes_rps"] = json!(probes);
    scenario["capacity_method"] = json!(format!(
        "median of {} closed-loop probes of {:.1} s with {} clients against the bare server, after a {:.1} s warm-up",
        plan.probes,
        plan.probe.as_secs_f64(),
        plan.probe_connections,
        plan.warmup.as_secs_f64()
    ));
    scenario["overload"] = json!(rate / capacity);
    scenario["connections"] = json!(plan.connections);
    scenario["probe_connections"] = json!(plan.probe_connections);
    scenario["deadline_ms"] = json!(args.deadline_ms);
    scenario["sweep_duration_s"] = json!(plan.sweep_duration.as_secs_f64());
    Ok(json!({
        "scenario": scenario,
        "strategies": runs
            .iter()
            .map(|r| strategy_json(&r.result, &r.report, &r.stats))
            .collect::<Vec<_>>(),
        "hello_rps": {"bare": hello.bare, "layered": hello.layered,
                      "method": "best of alternating closed-loop rounds after one warm-up round each",
                      "median": {"bare": hello.bare_median, "layered": hello.layered_median},
                      "rounds": {"bare": hello.bare_rounds, "layered": hello.layered_rounds},
                      "status_counts": hello.status_counts},
        "goals": goals,
        "machine": machine(),
    }))
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
