//! `surgepool-lab serve`: the lab's HTTP server on its own, for any client (wrk, oha, curl),
//! until Ctrl-C or SIGTERM; then it stops accepting, drains in-flight requests and exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::server::{self, LayerChoice, ServerConfig, Timeouts};
use crate::work::WorkKind;

/// Arguments of `surgepool-lab serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Admission layer: `none`, `adaptive`, `adaptive:slo=<MS>` (the adaptive limit told a
    /// latency objective of MS milliseconds) or `fixed:<N>`.
    #[arg(long, default_value = "adaptive")]
    pub(crate) layer: LayerChoice,
    /// Address to listen on (port 0 picks a free port; the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) addr: SocketAddr,
    /// What `/work` spends its time on.
    #[arg(long, value_enum, default_value = "sleep")]
    pub(crate) work: WorkKind,
    /// Time `/work` takes, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub(crate) service_ms: u64,
    /// Memory `/work` allocates and touches, in KiB.
    #[arg(long, default_value_t = 500)]
    pub(crate) alloc_kb: usize,
    /// Requests that may wait for admission when the limit is reached (needs --deadline-ms).
    #[arg(long, default_value_t = 0)]
    pub(crate) queue: usize,
    /// Deadline per request, queue wait included, in milliseconds (layered server only).
    #[arg(long)]
    pub(crate) deadline_ms: Option<u64>,
    /// Longest wait for a request head, in seconds: a head trickled in too slowly
    /// (slowloris), or an idle keep-alive connection waiting for its next request, is closed.
    #[arg(long, default_value_t = 10)]
    pub(crate) header_timeout_s: u64,
    /// A connection on which no byte moves for this many seconds while no handler runs (a
    /// client that stopped reading its response) is closed.
    #[arg(long, default_value_t = 60)]
    pub(crate) idle_timeout_s: u64,
    /// Longest wait for in-flight requests after Ctrl-C, in seconds.
    #[arg(long, default_value_t = 10)]
    pub(crate) drain_timeout_s: u64,
    /// Runtime worker threads (default: one per core it may run on).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Run on these CPUs only (Linux; `0`, `0,2` or `0-3`, as `taskset -c` reads them):
    /// `http --pin` gives its servers one half of the machine and its load generator the
    /// other.
    #[arg(long)]
    pub(crate) cpus: Option<crate::cpus::CpuList>,
    /// Write the adaptive limit's decisions to this file, a line per measure window (see
    /// `overload --trace-limit`); with another layer it stays empty.
    #[arg(long)]
    pub(crate) trace_limit: Option<PathBuf>,
}

impl Args {
    pub(crate) fn server_config(&self) -> anyhow::Result<ServerConfig> {
        if self.layer == LayerChoice::None && (self.queue > 0 || self.deadline_ms.is_some()) {
            anyhow::bail!("--queue and --deadline-ms need a layer (--layer adaptive or fixed:<N>)");
        }
        if self.deadline_ms == Some(0) {
            anyhow::bail!("--deadline-ms must be at least 1");
        }
        Ok(ServerConfig {
            layer: self.layer,
            work: self.work,
            service_time: Duration::from_millis(self.service_ms),
            alloc_bytes: self
                .alloc_kb
                .checked_mul(1024)
                .context("--alloc-kb is too large")?,
            queue: self.queue,
            deadline: self.deadline_ms.map(Duration::from_millis),
            faults: None,
        })
    }

    /// The connection timeouts, checked: at least 1 s, at most a day (hyper adds the header
    /// timeout to its clock unchecked; a longer bound is no bound anyway).
    pub(crate) fn timeouts(&self) -> anyhow::Result<Timeouts> {
        let max = Timeouts::MAX.as_secs();
        let check = |flag: &str, secs: u64| {
            anyhow::ensure!(
                (1..=max).contains(&secs),
                "--{flag} must be between 1 and {max} seconds, got {secs}"
            );
            Ok(Duration::from_secs(secs))
        };
        Ok(Timeouts {
            header_read: check("header-timeout-s", self.header_timeout_s)?,
            idle: check("idle-timeout-s", self.idle_timeout_s)?,
        })
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let config = args.server_config()?;
    let timeouts = args.timeouts()?;
    if let Some(path) = &args.trace_limit {
        crate::limit_trace::write_to(path)?;
    }
    if let Some(cpus) = &args.cpus {
        // Before the runtime starts: its threads inherit the pinning, and its default
        // worker count is then the number of these CPUs.
        crate::cpus::pin(&cpus.0)?;
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        anyhow::ensure!(threads > 0, "--threads must be at least 1");
        runtime.worker_threads(threads);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(serve(args, config, timeouts))
}

async fn serve(args: Args, config: ServerConfig, timeouts: Timeouts) -> anyhow::Result<()> {
    let (app, layer) = server::app(config)?;
    let listener = server::bind(args.addr).await?;
    let local = listener.local_addr()?;
    // The `http` experiment reads this line to learn the port; keep its shape.
    println!(
        "surgepool-lab serve: listening on http://{local} (layer: {}); routes /work /hello /stats; Ctrl-C to stop",
        args.layer
    );
    let signaled = std::sync::Arc::new(tokio::sync::Notify::new());
    let on_signal = signaled.clone();
    let server = server::serve(listener, app, timeouts, async move {
        shutdown_signal().await;
        on_signal.notify_one();
    });
    tokio::pin!(server);
    let drain = Duration::from_secs(args.drain_timeout_s);
    tokio::select! {
        result = &mut server => result.context("serving")?,
        () = async { signaled.notified().await; tokio::time::sleep(drain).await } => {
            eprintln!("surgepool-lab serve: drain timed out after {drain:?}; exiting with requests in flight");
        }
    }
    if let Some(layer) = layer {
        let s = layer.stats();
        eprintln!(
            "surgepool-lab serve: stopped; {} requests: admitted {}, shed {} (+{} queue timeouts), cancelled in the queue {}; timed out {}, bodies past their timeout {}; limit {}",
            s.requests,
            s.admitted,
            s.overloaded,
            s.queue_timeouts,
            s.cancelled,
            s.timeouts,
            s.body_timeouts,
            s.limiter.limit
        );
    } else {
        eprintln!("surgepool-lab serve: stopped; drained");
    }
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix (what a supervisor, or the `http` experiment, sends).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
