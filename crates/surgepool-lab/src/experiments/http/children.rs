//! The lab's own servers in child processes: the bare server's capacity, then the same
//! open-loop schedule against the bare, the layered and the swept servers, then the `/hello`
//! overhead rounds, the goals and the report.

use std::path::Path;
use std::time::Duration;

use anyhow::ensure;
use serde_json::{json, Value};

use super::hello::{self, Hello};
use super::plan::{preset_name, Preset};
use super::results::{self, median, print_growth, print_table, strategy_json};
use super::runs::{drive, run_server, Run};
use super::server_child::ServerChild;
use super::wrk::print_wrk;
use super::{goals, machine, Args, Plan};
use crate::http_load::{self, ClosedLoop, LoadReport, OpenLoop, RequestTemplate, Target};
use crate::scenario_json::{Goal, Scenario, ScenarioReport, StrategyResult};
use crate::server::LayerChoice;

pub(super) async fn run_children(args: &Args, plan: &Plan) -> anyhow::Result<Value> {
    let deadline = Duration::from_millis(args.deadline_ms);
    let slo = args.slo()?;

    // 1. The bare server: warm up, then the median of several short probes of its capacity.
    let mut bare = ServerChild::start(args, LayerChoice::None, false)?;
    let work = bare.target.with_path("/work");
    let (capacity, probes) = probe_capacity(plan, &bare, &work, deadline).await?;
    let rate = offered_rate(args, plan, capacity, &probes);
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
    let swept = sweep(args, plan, &spec).await?;

    // 4. Overhead: `/hello` at full speed, bare vs layered, alternating rounds.
    let hello = hello::rounds(args, plan, deadline).await?;

    let runs: Vec<&Run> = [&bare_run, &layered].into_iter().chain(&swept).collect();
    let rows: Vec<(&StrategyResult, &LoadReport)> =
        runs.iter().map(|r| (&r.result, &r.report)).collect();
    print_table(&rows);
    print_growth(&bare_run.result, &layered.result);
    print_hello(args, plan, &hello);
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
    print_closing_notes(args, plan, &work, rate);

    let scenario = scenario(args, plan, rate, slo);
    if let Some(dir) = &args.report {
        write_report(dir, &scenario, &runs, &goals, &rows)?;
    }
    let scenario = scenario_json(args, plan, scenario, capacity, &probes, rate)?;
    Ok(output_json(scenario, &runs, &hello, &goals))
}

/// The bare server's capacity: a closed-loop warm-up, then the median of `plan.probes` short
/// closed-loop probes on `work`. Returns the capacity and every probe's goodput.
async fn probe_capacity(
    plan: &Plan,
    bare: &ServerChild,
    work: &Target,
    deadline: Duration,
) -> anyhow::Result<(f64, Vec<f64>)> {
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
    Ok((capacity, probes))
}

/// The open loop's rate: `--rps`, or `--overload ×` the capacity, at most the preset's
/// `max_rps`.
fn offered_rate(args: &Args, plan: &Plan, capacity: f64, probes: &[f64]) -> f64 {
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
    rate
}

/// `--sweep`: the same schedule against one server per fixed layer, `--sweep-duration-s`
/// each (none without `--sweep`).
async fn sweep(args: &Args, plan: &Plan, spec: &OpenLoop) -> anyhow::Result<Vec<Run>> {
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
    Ok(swept)
}

fn print_hello(args: &Args, plan: &Plan, hello: &Hello) {
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
}

fn print_closing_notes(args: &Args, plan: &Plan, work: &Target, rate: f64) {
    println!(
        "\nthe lab's server puts /work and /hello behind one layer; this run loads /work alone, \
         so the limit saw one latency class"
    );
    // The children are gone by now: point at a `serve` instance on its default address.
    print_wrk(
        "http://127.0.0.1:8080",
        work,
        rate,
        plan,
        args.hello_connections,
    );
}

fn scenario(args: &Args, plan: &Plan, rate: f64, slo: Duration) -> Scenario {
    Scenario {
        preset: preset_name(args.preset).to_owned(),
        work: args.work.name().to_owned(),
        offered_rps: rate.round() as u64,
        duration_s: plan.duration.as_secs_f64(),
        service_ms: args.service_ms,
        alloc_kb: args.alloc_kb as u64,
        mem_cap_bytes: args.mem_cap_mb.saturating_mul(1024 * 1024),
        drain_s: 0.0,
        // A server's runtime has one worker per CPU it may run on.
        worker_threads: args
            .server_cpus
            .as_ref()
            .map_or_else(crate::machine::cores, Vec::len),
        slo_ms: slo.as_secs_f64() * 1000.0,
        kind: String::new(),
    }
}

/// `--report DIR`: the HTML report.
fn write_report(
    dir: &Path,
    scenario: &Scenario,
    runs: &[&Run],
    goals: &[Goal],
    rows: &[(&StrategyResult, &LoadReport)],
) -> anyhow::Result<()> {
    let report = ScenarioReport {
        scenario: scenario.clone(),
        strategies: runs.iter().map(|r| r.result.clone()).collect(),
        machine: machine(),
        goals: goals.to_vec(),
    };
    let path = crate::report::write_overload(
        dir,
        &report,
        &results::cells(rows),
        "surgepool-lab http: the admission layer over loopback",
    )?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The scenario as JSON, with this experiment's own fields: the layer, the capacity and how
/// it was measured, the overload, the connection counts.
fn scenario_json(
    args: &Args,
    plan: &Plan,
    scenario: Scenario,
    capacity: f64,
    probes: &[f64],
    rate: f64,
) -> anyhow::Result<Value> {
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
    // `--pin`: the CPUs each side ran on (null when they shared the machine).
    scenario["server_cpus"] = json!(args.server_cpus);
    scenario["generator_cpus"] = json!(args.generator_cpus);
    Ok(scenario)
}

/// What `--json` writes: the scenario, every server's results, the `/hello` rounds, the goals.
fn output_json(scenario: Value, runs: &[&Run], hello: &Hello, goals: &[Goal]) -> Value {
    json!({
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
    })
}
