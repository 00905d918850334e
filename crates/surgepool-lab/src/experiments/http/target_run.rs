//! `--target URL`: the open-loop generator alone, against a server the lab did not start.

use std::time::Duration;

use anyhow::bail;
use serde_json::{json, Value};

use super::plan::preset_name;
use super::results::{print_table, strategy_json, strategy_result};
use super::wrk::print_wrk;
use super::{machine, Args, Plan};
use crate::http_load::{self, OpenLoop, Target};

/// `--target URL`: the generator alone, against someone else's server.
pub(super) async fn run_target(args: &Args, plan: &Plan, url: &str) -> anyhow::Result<Value> {
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
