//! The layer's overhead: `/hello` at full speed in a closed loop, bare vs layered, in
//! alternating rounds.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::results::{counts_json, median};
use super::server_child::ServerChild;
use super::{Args, Plan};
use crate::http_load::{self, ClosedLoop};
use crate::server::LayerChoice;

/// The `/hello` overhead rounds.
pub(super) struct Hello {
    pub(super) bare: f64,
    pub(super) layered: f64,
    pub(super) bare_median: f64,
    pub(super) layered_median: f64,
    pub(super) bare_rounds: Vec<f64>,
    pub(super) layered_rounds: Vec<f64>,
    pub(super) status_counts: Value,
}

pub(super) async fn rounds(args: &Args, plan: &Plan, deadline: Duration) -> anyhow::Result<Hello> {
    eprintln!(
        "hello: closed loop, {} clients, {} round(s) of {:.1} s per server",
        args.hello_connections,
        plan.hello_rounds,
        plan.hello.as_secs_f64()
    );
    let hello_bare = ServerChild::start(args, LayerChoice::None, true)?;
    let hello_layered = ServerChild::start(args, args.layer, true)?;
    let (mut bare_rps, mut layered_rps) = (Vec::new(), Vec::new());
    let mut statuses: BTreeMap<&str, BTreeMap<u16, u64>> = BTreeMap::new();
    let round = |child: &ServerChild| ClosedLoop {
        target: child.target.with_path("/hello"),
        connections: args.hello_connections,
        duration: plan.hello,
        deadline,
    };
    // One uncounted warm-up round each (fresh processes, cold caches), then alternating
    // rounds, so other processes' noise falls on both servers alike.
    for child in [&hello_bare, &hello_layered] {
        http_load::closed_loop(round(child)).await?;
    }
    for _ in 0..plan.hello_rounds {
        for (name, child, out) in [
            ("bare", &hello_bare, &mut bare_rps),
            ("layered", &hello_layered, &mut layered_rps),
        ] {
            let r = http_load::closed_loop(round(child)).await?;
            out.push(r.ok_rps());
            let counts = statuses.entry(name).or_default();
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
    Ok(Hello {
        bare: best(&bare_rps),
        layered: best(&layered_rps),
        bare_median: median(&mut bare_rps.clone()),
        layered_median: median(&mut layered_rps.clone()),
        status_counts: Value::Object(
            statuses
                .iter()
                .map(|(k, v)| ((*k).to_owned(), counts_json(v)))
                .collect(),
        ),
        bare_rounds: bare_rps,
        layered_rounds: layered_rps,
    })
}
