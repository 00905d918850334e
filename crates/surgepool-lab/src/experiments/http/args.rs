//! `surgepool-lab http`'s flags ([`Args`]), and the request and SLO they describe.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use hyper::body::Bytes;

use super::plan::Preset;
use crate::http_load::RequestTemplate;
use crate::server::LayerChoice;
use crate::work::WorkKind;

/// Arguments of `surgepool-lab http`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// `quick` (about a minute) or `smoke` (a few seconds, low rate: for CI).
    #[arg(long, value_enum, default_value = "quick")]
    pub(super) preset: Preset,
    /// What `/work` spends its time on.
    #[arg(long, value_enum, default_value = "sleep")]
    pub(super) work: WorkKind,
    /// Time `/work` takes, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub(super) service_ms: u64,
    /// Memory `/work` allocates and touches, in KiB.
    #[arg(long, default_value_t = 500)]
    pub(super) alloc_kb: usize,
    /// The latency SLO in ms, from intended send time (default: 3 × the service time).
    #[arg(long)]
    pub(super) slo_ms: Option<f64>,
    /// The layered server's admission layer: `adaptive`, `adaptive:slo=<MS>` (the adaptive
    /// limit told a latency objective of MS milliseconds) or `fixed:<N>`.
    #[arg(long, default_value = "adaptive")]
    pub(super) layer: LayerChoice,
    /// Offered load as a multiple of the layered server's measured capacity.
    #[arg(long, default_value_t = 3.0)]
    pub(super) overload: f64,
    /// Offered load in requests/s, in absolute terms (overrides --overload; the capacity is
    /// still probed and reported).
    #[arg(long)]
    pub(super) rps: Option<f64>,
    /// Seconds of open-loop load per server (default: from the preset).
    #[arg(long)]
    pub(super) duration_s: Option<f64>,
    /// Most connections the open-loop generator opens (each carries one request at a time).
    #[arg(long)]
    pub(super) connections: Option<usize>,
    /// Short closed-loop probes of the bare server's capacity; their median is the capacity
    /// (default: from the preset).
    #[arg(long)]
    pub(super) probes: Option<usize>,
    /// Also run the same schedule against a server per `fixed:<N>` layer (`fixed_<N>`).
    #[arg(long)]
    pub(super) sweep: bool,
    /// The limits `--sweep` runs, comma-separated (default: 16, 32, ..., 2048).
    #[arg(long, value_delimiter = ',')]
    pub(super) sweep_limits: Option<Vec<usize>>,
    /// Seconds of open-loop load per swept layer (default: as long as the layered server's,
    /// `--duration-s`).
    #[arg(long)]
    pub(super) sweep_duration_s: Option<f64>,
    /// Write an HTML report (index.html with charts) into this directory.
    #[arg(long)]
    pub(super) report: Option<PathBuf>,
    /// Write each adaptive layer's decisions to `DIR/<layer>.log` (`adaptive.log`), a line
    /// per measure window (see `overload --trace-limit`); the `/hello` runs' server to
    /// `DIR/<layer>-hello.log`.
    #[arg(long, value_name = "DIR")]
    pub(super) trace_limit: Option<PathBuf>,
    /// Clients of the closed-loop capacity probe (default: from the preset). It must keep more
    /// requests in flight than the server can finish, or it measures itself.
    #[arg(long)]
    pub(super) probe_connections: Option<usize>,
    /// Clients of the closed-loop `/hello` overhead runs.
    #[arg(long, default_value_t = 8)]
    pub(super) hello_connections: usize,
    /// Per-request deadline of the generator, in milliseconds (no request waits longer).
    #[arg(long, default_value_t = 5_000)]
    pub(super) deadline_ms: u64,
    /// Stop a server whose RSS passes this many MiB.
    #[arg(long, default_value_t = 4_096)]
    pub(super) mem_cap_mb: u64,
    /// Aim the open-loop generator at this server instead (loopback only), e.g.
    /// `http://127.0.0.1:8080/work`; needs --rps.
    #[arg(long)]
    pub(super) target: Option<String>,
    /// With --target: a cheap path to request once on every connection before the clock
    /// starts (e.g. `/hello`), so the run does not measure first-use costs.
    #[arg(long)]
    pub(super) warm_path: Option<String>,
    /// With --target: the request method (`POST` with --body, say).
    #[arg(long, default_value = "GET")]
    pub(super) method: http::Method,
    /// With --target: the body every request carries (e.g. a JSON order).
    #[arg(long)]
    pub(super) body: Option<String>,
    /// With --target: the body's content type.
    #[arg(long, default_value = "application/json")]
    pub(super) content_type: String,
    /// Write the results as JSON (API.md's shape) to this file.
    #[arg(long)]
    pub(super) json: Option<PathBuf>,
    /// Give the servers the first half of the CPUs and the load generator the rest (Linux;
    /// on 2 cores, one each), as if the client ran on a machine of its own: sharing the
    /// CPUs, the generator falls seconds behind its schedule under overload. The capacity
    /// probed (and so "3×") is then the pinned server's.
    #[arg(long)]
    pub(super) pin: bool,
    /// With --pin: the servers' CPUs (set by `run`, not a flag).
    #[arg(skip)]
    pub(super) server_cpus: Option<Vec<usize>>,
    /// With --pin: the load generator's CPUs (set by `run`, not a flag).
    #[arg(skip)]
    pub(super) generator_cpus: Option<Vec<usize>>,
}

impl Args {
    /// The request `--target` runs send: `--method`, `--body`, `--content-type`.
    pub(super) fn request_template(&self) -> anyhow::Result<RequestTemplate> {
        let content_type = match &self.body {
            Some(_) => Some(
                http::HeaderValue::from_str(&self.content_type).with_context(|| {
                    format!(
                        "--content-type {:?} is not a header value",
                        self.content_type
                    )
                })?,
            ),
            None => None,
        };
        Ok(RequestTemplate {
            method: self.method.clone(),
            body: self.body.clone().map(Bytes::from).unwrap_or_default(),
            content_type,
        })
    }

    /// The SLO: `--slo-ms`, or 3 × the service time.
    pub(super) fn slo(&self) -> anyhow::Result<Duration> {
        let ms = self.slo_ms.unwrap_or(3.0 * self.service_ms as f64);
        ensure!(
            ms.is_finite() && ms > 0.0 && ms <= f64::from(crate::MAX_MS),
            "--slo-ms must be above 0 and at most {}, got {ms}",
            crate::MAX_MS
        );
        Ok(Duration::from_secs_f64(ms / 1000.0))
    }
}
