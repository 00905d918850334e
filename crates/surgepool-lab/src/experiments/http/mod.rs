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
//!   (or `--rps`), after a warm-up on the same schedule; latency runs from each request's
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

use anyhow::{ensure, Context as _};

mod args;
mod children;
mod cpu;
mod goals;
mod hello;
mod plan;
mod results;
mod runs;
mod server_child;
mod target_run;
mod wrk;

pub(crate) use self::args::Args;
use self::children::run_children;
use self::plan::Plan;
use self::target_run::run_target;
use crate::rss;
use crate::scenario_json::Machine;
use crate::server::LayerChoice;

pub(crate) fn run(mut args: Args) -> anyhow::Result<()> {
    let plan = args.plan()?;
    if let Some(dir) = &args.trace_limit {
        crate::limit_trace::create_dir(dir)?;
    }
    // The machine's cores as this process found them, before `--pin` narrows its view.
    let _ = MACHINE_CORES.set(crate::machine::cores());
    if args.pin {
        ensure!(
            args.target.is_none(),
            "--pin pins the lab's own servers; pin a --target server with taskset instead"
        );
        let (servers, generator) = crate::cpus::split(&crate::cpus::allowed()?)?;
        // Before the runtime starts, so that its threads inherit it.
        crate::cpus::pin(&generator)?;
        eprintln!(
            "pinned: servers on CPU(s) {}, the load generator on {}",
            crate::cpus::format_list(&servers),
            crate::cpus::format_list(&generator)
        );
        args.server_cpus = Some(servers);
        args.generator_cpus = Some(generator);
    }
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

/// The cores the lab could use when it started (`--pin` then gives half to each side).
static MACHINE_CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

fn machine() -> Machine {
    Machine {
        cores: MACHINE_CORES
            .get()
            .copied()
            .unwrap_or_else(crate::machine::cores),
        memory_bytes: rss::total_memory_bytes().unwrap_or(0),
        allocator: crate::alloc_count::ALLOCATOR.to_owned(),
    }
}
