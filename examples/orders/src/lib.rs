//! `orders`: the reference service. [`main`] parses the command line and hands over to
//! `serve::run`, `worker::run` or `upstream::run`; everything else lives in the private
//! modules below.
//!
//! ```text
//! orders [serve] [--addr 127.0.0.1:8080] [--admin-addr 127.0.0.1:6060] [--database sqlite://orders.db]
//! orders upstream --addr 127.0.0.1:9090 --fail-rate 0.3 --delay-ms 50
//! orders bare --addr 127.0.0.1:8081      # the bare-axum baseline for load runs
//! orders worker --redis-url redis://127.0.0.1:6379 --database sqlite://orders.db
//! ```
//!
//! The binary is `src/main.rs`; the library exists so that the fuzz target `orders_request`
//! (`fuzz/`) and its test can drive the real service in-process ([`fuzzing`]).

mod admin;
mod app;
mod breaker;
mod config;
mod confirm;
mod error;
pub mod fuzzing;
mod metrics;
mod net;
mod ratelimit;
mod request_log;
mod routes;
mod serve;
mod state;
mod storage;
mod upstream;
mod worker;
mod writer;

use std::process::ExitCode;

use clap::Parser;

/// The whole program: parses the command line (`std::env::args`) and runs what it names.
/// The `orders` binary is this function and the allocator it installs.
pub fn main() -> ExitCode {
    let cli = config::Cli::parse();
    tracing_subscriber::fmt()
        .with_max_level(cli.log_level())
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        None => cli.serve.validate().and_then(serve::run),
        Some(config::Command::Serve(args)) => args.validate().and_then(serve::run),
        Some(config::Command::Upstream(args)) => args.validate().and_then(upstream::run),
        Some(config::Command::Worker(args)) => args.validate().and_then(worker::run),
        Some(config::Command::Bare(args)) => args.validate().and_then(upstream::run_bare),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("orders: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
