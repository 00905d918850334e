//! `surgepool-lab`: reruns the seeds' experiments on this machine. The binary is glue; each
//! experiment lives in `experiments/`, and shared measurement code in its own modules.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod alloc_count;
mod child;
mod cpus;
mod experiments;
mod http_load;
mod limit_trace;
mod machine;
mod open_loop;
mod report;
mod rss;
mod run_stats;
mod scenario_json;
mod server;
mod table;
mod work;

/// The longest duration, in milliseconds, that a flag or a strategy's knob takes: an hour.
const MAX_MS: u32 = 3_600_000;

/// The surgepool lab: measure concurrency shapes and overload behaviour on this machine.
#[derive(Debug, Parser)]
#[command(name = "surgepool-lab", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Seed 000: per-op cost of handing work to concurrency (serial, spawn, pools, ours).
    Shapes(experiments::shapes::Args),
    /// Seed 003: open-loop overload, naive spawning vs bounded and adaptive pools.
    Overload(experiments::overload::Args),
    /// Seeds 001/002: an axum server with and without the admission layer, under load.
    Http(Box<experiments::http::Args>),
    /// Seed 001's external queue: a spike and a slowdown with a local pool overflowing into Redis Streams.
    Fleet(experiments::fleet::Args),
    /// One consumer process of `fleet` (the lab starts it).
    #[command(hide = true)]
    FleetConsumer(experiments::fleet::ConsumerArgs),
    /// Seed 001: batched inserts on SQLite and PostgreSQL, by hand and through `Batcher`.
    Batch(experiments::batch::Args),
    /// The adaptive layer over loopback under disturbances (cheap warm-up, clients honouring
    /// Retry-After, a burst of 5xx, client disconnects), each against a control run.
    Disturb(experiments::disturb::Args),
    /// Run the lab's HTTP server on its own until Ctrl-C, then drain and exit.
    Serve(experiments::serve::Args),
    /// Print the path of the newest HTML report under a directory (or open it with --open).
    Report(experiments::latest_report::Args),
    /// Minutes of mixed load: RSS, fd and thread trends, tasks lost, identities.
    Soak(experiments::soak::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Shapes(args) => experiments::shapes::run(args),
        Command::Overload(args) => experiments::overload::run(args),
        Command::Http(args) => experiments::http::run(*args),
        Command::Fleet(args) => experiments::fleet::run(args),
        Command::FleetConsumer(args) => experiments::fleet::run_consumer(args),
        Command::Serve(args) => experiments::serve::run(args),
        Command::Disturb(args) => experiments::disturb::run(args),
        Command::Report(args) => experiments::latest_report::run(args),
        Command::Soak(args) => experiments::soak::run(args),
        Command::Batch(args) => experiments::batch::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("surgepool-lab: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
