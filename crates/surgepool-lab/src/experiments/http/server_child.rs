//! A `surgepool-lab serve` child process on loopback, driven and measured from outside.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::Value;

use super::Args;
use crate::http_load::{self, LoadReport, OpenLoop, Target};
use crate::rss::{self, RssSampler, RssSeries};
use crate::server::LayerChoice;

/// A `surgepool-lab serve` child process on 127.0.0.1 with a free port.
pub(super) struct ServerChild {
    child: Child,
    pub(super) target: Target,
}

impl ServerChild {
    /// Starts a server with `layer`; `hello` says it serves the `/hello` overhead runs (its
    /// limit trace, if any, goes to a file of its own).
    pub(super) fn start(
        args: &Args,
        layer: LayerChoice,
        hello: bool,
    ) -> anyhow::Result<ServerChild> {
        let exe = std::env::current_exe().context("finding the lab's own executable")?;
        let mut child = Command::new(exe)
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--layer",
                &layer.to_string(),
            ])
            .args(["--work", args.work.name()])
            .args(["--service-ms", &args.service_ms.to_string()])
            .args(["--alloc-kb", &args.alloc_kb.to_string()])
            .args(["--drain-timeout-s", "2"])
            .args(
                args.server_cpus
                    .iter()
                    .flat_map(|cpus| ["--cpus".to_owned(), crate::cpus::format_list(cpus)]),
            )
            .args(trace_file(args, layer, hello).into_iter().flat_map(|path| {
                [
                    std::ffi::OsString::from("--trace-limit"),
                    path.into_os_string(),
                ]
            }))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the server child process")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(str::to_owned);
        let Some(url) = url else {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            let _ = child.wait();
            bail!("the server child did not start: {}", err.trim());
        };
        Ok(ServerChild {
            child,
            target: Target::parse_loopback(&url)?,
        })
    }

    /// The server process's id.
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs the open loop against this server while sampling its RSS, and its limit and
    /// in-flight count from `/stats` every [`LIMIT_EVERY`]; kills it if the RSS passes
    /// `mem_cap` (the load goes on, and fails fast, so the run stays bounded).
    pub(super) async fn drive(
        &mut self,
        spec: OpenLoop,
        mem_cap: u64,
    ) -> anyhow::Result<(LoadReport, Memory)> {
        let pid = self.child.id();
        let sampler =
            RssSampler::start(rss::Target::Pid(pid)).context("sampling the server's RSS")?;
        let started = Instant::now();
        let done = AtomicBool::new(false);
        let mut stopped_at_s = None;
        let watch = async {
            while !done.load(Ordering::Relaxed) {
                if sampler.latest() > mem_cap {
                    stopped_at_s = Some(started.elapsed().as_secs_f64());
                    let _ = self.child.kill();
                    return;
                }
                tokio::time::sleep(rss::SAMPLE_EVERY).await;
            }
        };
        let stats = self.target.with_path("/stats");
        let read = |body: String| {
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            LimitSample {
                at: tokio::time::Instant::now(),
                limit: v["admission"]["limit"].as_u64().unwrap_or(0),
                in_flight: v["in_flight"].as_u64().unwrap_or(0),
            }
        };
        // One reading before the load starts, so every second of the schedule has one.
        let mut limits: Vec<LimitSample> = fetch(&stats).await.map(read).into_iter().collect();
        let sample_limits = async {
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(LIMIT_EVERY).await;
                // `/stats` sits outside the admission layer: asking never takes a permit.
                if let Ok(body) = fetch(&stats).await {
                    limits.push(read(body));
                }
            }
        };
        let load = async {
            let report = http_load::open_loop(spec).await;
            done.store(true, Ordering::Relaxed);
            report
        };
        let (report, (), ()) = tokio::join!(load, watch, sample_limits);
        Ok((
            report?,
            Memory {
                rss: sampler.finish(),
                stopped_at_s,
                limits,
            },
        ))
    }

    pub(super) async fn stats(&self) -> Value {
        let target = self.target.with_path("/stats");
        match fetch(&target).await {
            Ok(body) => serde_json::from_str(&body).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// SIGTERM (the server drains), then a kill if it is still there after 3 s.
    pub(super) fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        // Never leave a server behind, even on an error path.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Where a server with `layer` writes its limit's decisions: `--trace-limit DIR`'s
/// `DIR/<layer>.log` (`adaptive.log`, `adaptive_slo=55.log`), or `DIR/<layer>-hello.log`
/// for the `/hello` runs' server; adaptive layers only.
fn trace_file(args: &Args, layer: LayerChoice, hello: bool) -> Option<std::path::PathBuf> {
    let dir = args.trace_limit.as_ref()?;
    let name = layer.to_string().replace(':', "_");
    let suffix = if hello { "-hello" } else { "" };
    matches!(layer, LayerChoice::Adaptive | LayerChoice::AdaptiveSlo(_))
        .then(|| dir.join(format!("{name}{suffix}.log")))
}

async fn fetch(target: &Target) -> anyhow::Result<String> {
    use http_body_util::{BodyExt, Empty};
    let stream = tokio::net::TcpStream::connect(target.addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = http::Request::get(target.path.as_str())
        .header(http::header::HOST, target.host.as_str())
        .body(Empty::<hyper::body::Bytes>::new())?;
    let response =
        tokio::time::timeout(Duration::from_secs(5), sender.send_request(request)).await??;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The server's memory over a run.
#[derive(Debug, Default)]
pub(super) struct Memory {
    pub(super) rss: RssSeries,
    /// Seconds into the run when the RSS passed the cap and the server was killed.
    pub(super) stopped_at_s: Option<f64>,
    /// The server's limit and in-flight count over the run.
    pub(super) limits: Vec<LimitSample>,
}

/// How often the server's `/stats` is read during an open loop.
const LIMIT_EVERY: Duration = Duration::from_millis(100);

/// One reading of the server's `/stats`.
#[derive(Debug, Clone, Copy)]
pub(super) struct LimitSample {
    pub(super) at: tokio::time::Instant,
    /// The admission layer's limit (0: no layer).
    pub(super) limit: u64,
    /// Requests in the handlers.
    pub(super) in_flight: u64,
}
