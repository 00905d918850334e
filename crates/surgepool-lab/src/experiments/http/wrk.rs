//! The wrk2 and wrk command lines that send the same load, for a second opinion.

use super::Plan;
use crate::http_load::Target;

pub(super) fn print_wrk(
    base: &str,
    target: &Target,
    rate: f64,
    plan: &Plan,
    hello_connections: usize,
) {
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
