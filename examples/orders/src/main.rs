//! `orders`: the reference service. `main` parses the command line and hands over to
//! [`serve::run`], [`worker::run`] or [`upstream::run`]; everything else lives in the modules below.
//!
//! ```text
//! orders [serve] [--addr 127.0.0.1:8080] [--admin-addr 127.0.0.1:6060] [--database sqlite://orders.db]
//! orders upstream --addr 127.0.0.1:9090 --fail-rate 0.3 --delay-ms 50
//! orders bare --addr 127.0.0.1:8081      # the bare-axum baseline for load runs
//! orders worker --redis-url redis://127.0.0.1:6379 --database sqlite://orders.db
//! ```

mod admin;
mod app;
mod breaker;
mod config;
mod confirm;
mod error;
mod metrics;
mod net;
mod ratelimit;
mod routes;
mod serve;
mod state;
mod storage;
mod upstream;
mod worker;
mod writer;

use std::process::ExitCode;

/// jemalloc on Linux, for heap profiles (`/debug/pprof/heap`). Not in the unit tests, which
/// install a counting allocator of their own (`routes::hello`).
#[cfg(all(target_os = "linux", not(test)))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads its options from this symbol at start: profiling on and active, one sample
/// per 2^19 bytes (512 KiB) allocated on average, so its cost stays small on the hot path.
#[cfg(all(target_os = "linux", not(test)))]
#[allow(non_upper_case_globals, unreachable_pub)]
#[export_name = "malloc_conf"]
pub static malloc_conf: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:19\0";

use clap::Parser;

fn main() -> ExitCode {
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
