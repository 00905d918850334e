//! One server's run: a warm-up, the open loop, and what it used.

use serde_json::{json, Value};

use super::results::strategy_result;
use super::server_child::ServerChild;
use super::{cpu, Args, Plan};
use crate::http_load::{self, LoadReport, OpenLoop};
use crate::scenario_json::StrategyResult;
use crate::server::LayerChoice;

/// One server's open loop: what the generator saw, the server's memory and counters, and
/// the CPU both sides used.
pub(super) struct Run {
    pub(super) result: StrategyResult,
    pub(super) report: LoadReport,
    pub(super) stats: Value,
}

/// Starts a server with `layer`, warms it up with the closed loop, runs `spec` against it
/// and stops it. `name` is the strategy's name in the results.
pub(super) async fn run_server(
    args: &Args,
    plan: &Plan,
    name: &str,
    layer: LayerChoice,
    spec: &OpenLoop,
) -> anyhow::Result<Run> {
    let mut server = ServerChild::start(args, layer, false)?;
    let work = server.target.with_path("/work");
    eprintln!(
        "{name} ({layer}) on {}: {:.1} s warm-up, then open loop at {:.0} requests/s for {:.1} s",
        server.target.url(),
        plan.warmup.as_secs_f64(),
        spec.rate,
        spec.duration.as_secs_f64()
    );
    // The same warm-up for every server, so that an adaptive limit has settled and no
    // server is judged on its first-use costs: the run's own schedule, for `plan.warmup`.
    // (A closed loop of `plan.probe_connections` clients, as the capacity probes use, is
    // an overload of its own, 1.2–1.6× the capacity, whose clients retry at once after a
    // 503: it once left an adaptive limit at 27 slots for a run at half the capacity,
    // which then shed 5.7 % of its requests while the limit climbed back.)
    if spec.rate * plan.warmup.as_secs_f64() >= 1.0 {
        http_load::open_loop(OpenLoop {
            target: work.clone(),
            duration: plan.warmup,
            ..spec.clone()
        })
        .await?;
    }
    let spec = OpenLoop {
        target: work,
        ..spec.clone()
    };
    let result = drive(args, name, &mut server, spec).await;
    server.stop();
    result
}

/// Runs `spec` against `server` and turns what was seen into a [`Run`].
pub(super) async fn drive(
    args: &Args,
    name: &str,
    server: &mut ServerChild,
    spec: OpenLoop,
) -> anyhow::Result<Run> {
    let mem_cap = args.mem_cap_mb.saturating_mul(1024 * 1024);
    let rate = spec.rate;
    let cpu_before = cpu::Usage::read(server.pid());
    let (report, mem) = server.drive(spec, mem_cap).await?;
    let cpu = cpu_before.map(|before| before.until_now(server.pid()));
    let stats = if mem.stopped_at_s.is_some() {
        Value::Null
    } else {
        server.stats().await
    };
    let mut result = strategy_result(name, &report, Some(&mem), &stats, rate, args.slo()?);
    if let Some(cpu) = cpu {
        result.config.push_str(&format!(
            "; CPU over the open loop: server {:.1} s, load generator {:.1} s",
            cpu.server_s, cpu.generator_s
        ));
    }
    let mut stats = stats;
    if let (Some(cpu), Value::Object(map)) = (cpu, &mut stats) {
        map.insert("cpu".into(), cpu.to_json());
    } else if let Some(cpu) = cpu {
        stats = json!({ "cpu": cpu.to_json() });
    }
    Ok(Run {
        result,
        report,
        stats,
    })
}
