//! Consumers as processes: each is this binary re-run as `surgepool-lab fleet-consumer`,
//! standing in for one machine. It connects to the lab's Redis and downstream on its own,
//! prints its [`Snapshot`](surgepool_redis::Snapshot) as a JSON line every 100 ms, and
//! drains and exits when its stdin closes (the lab closes it to stop the fleet).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use surgepool::Limit;
use surgepool_redis::{Consumer, Job, Queue};

use super::downstream::Client;

/// What a consumer process reports, every 100 ms and once more when it has drained.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Report {
    pub(super) in_flight: u64,
    pub(super) limit: u64,
    pub(super) acked: u64,
    pub(super) dead: u64,
    /// Deliveries read with XREADGROUP (fetched minus reclaimed), and the reads that got any.
    pub(super) read: u64,
    pub(super) reads: u64,
    pub(super) redis_errors: u64,
    /// Jobs handed back at its drain.
    pub(super) handed_back: u64,
    /// Set on the last line, after the drain.
    pub(super) last: bool,
}

/// Arguments of the hidden `surgepool-lab fleet-consumer` (the lab starts it).
#[derive(Debug, clap::Args)]
pub(crate) struct ConsumerArgs {
    /// Redis URL of the lab's redis-server.
    #[arg(long)]
    redis: String,
    /// The stream (and queue) name.
    #[arg(long)]
    stream: String,
    /// This consumer's name in the group.
    #[arg(long)]
    name: String,
    /// `adaptive` or `fixed:<N>`.
    #[arg(long)]
    limit: String,
    /// The downstream's address.
    #[arg(long)]
    downstream: SocketAddr,
}

/// The consumer process's `main`.
pub(crate) fn run(args: ConsumerArgs) -> anyhow::Result<()> {
    let limit = match args.limit.as_str() {
        "adaptive" => Limit::adaptive(),
        other => match other.strip_prefix("fixed:").map(str::parse::<usize>) {
            Some(Ok(n)) if n > 0 => Limit::fixed(n),
            _ => bail!("--limit must be `adaptive` or `fixed:<N>` with N >= 1, not {other:?}"),
        },
    };
    // One worker thread: the processes share this machine's two cores with the lab and
    // redis-server, as machines would each run their own.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot build the tokio runtime")?;
    rt.block_on(async move {
        let queue = Queue::builder(&args.redis, &args.stream)
            .connect()
            .await
            .context("connecting to the lab's redis-server")?;
        let client = Client::connect(args.downstream).await?;
        let consumer = Consumer::builder(queue, move |job: Job| {
            let client = client.clone();
            async move { client.call(job.payload()).await }
        })
        .limit(limit)
        .name(args.name.clone())
        .drain_grace(Duration::from_secs(5))
        .build()
        .context("consumer")?;
        // Stdin closing is the stop signal (read on a thread: tokio's stdin would hold up
        // the runtime's shutdown).
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            let _ = stop_tx.send(());
        });
        let reporter = {
            let consumer = consumer.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tick.tick().await;
                    print_report(&consumer, 0, false);
                }
            })
        };
        let drained = consumer
            .run_until(async move {
                let _ = stop_rx.await;
            })
            .await;
        reporter.abort();
        let handed_back = drained.as_ref().map_or(0, |r| r.handed_back);
        print_report(&consumer, handed_back, true);
        drained.map(|_| ()).map_err(anyhow::Error::from)
    })
}

fn print_report(consumer: &Consumer, handed_back: u64, last: bool) {
    let s = consumer.snapshot();
    let report = Report {
        in_flight: s.in_flight,
        limit: s.limit,
        acked: s.acked,
        dead: s.dead,
        read: s.fetched.saturating_sub(s.reclaimed),
        reads: s.reads,
        redis_errors: s.redis_errors,
        handed_back,
        last,
    };
    if let Ok(line) = serde_json::to_string(&report) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// The lab's handle on one consumer process.
pub(super) struct Proc {
    child: Child,
    latest: Arc<Mutex<Report>>,
    reader: Option<JoinHandle<()>>,
}

impl Proc {
    /// Starts `surgepool-lab fleet-consumer` with these settings.
    pub(super) fn spawn(
        redis: &str,
        stream: &str,
        name: &str,
        limit: &str,
        downstream: SocketAddr,
    ) -> anyhow::Result<Proc> {
        let exe = std::env::current_exe().context("cannot find the lab's own executable")?;
        let mut child = Command::new(exe)
            .args(["fleet-consumer", "--redis", redis, "--stream", stream])
            .args(["--name", name, "--limit", limit])
            .args(["--downstream", &downstream.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start a consumer process")?;
        let stdout = child.stdout.take().context("no stdout from the consumer")?;
        let latest = Arc::new(Mutex::new(Report::default()));
        let l = latest.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(report) = serde_json::from_str::<Report>(&line) {
                    *lock(&l) = report;
                }
            }
        });
        Ok(Proc {
            child,
            latest,
            reader: Some(reader),
        })
    }

    /// Its latest report.
    pub(super) fn report(&self) -> Report {
        *lock(&self.latest)
    }

    /// Whether the process has already ended (before it was asked to stop: a failure).
    pub(super) fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Its latest report, shared: for a sampler that outlives this borrow.
    pub(super) fn reports(&self) -> Arc<Mutex<Report>> {
        self.latest.clone()
    }

    /// Closes its stdin (it drains and exits), waits at most `patience`, and returns its
    /// last report; a process that does not exit in time is killed (and reported so).
    pub(super) fn stop(mut self, patience: Duration) -> anyhow::Result<Report> {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + patience;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("a consumer process did not drain within {patience:?}: killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let report = self.report();
        if !status.success() || !report.last {
            bail!("a consumer process ended badly ({status}); its last report: {report:?}");
        }
        Ok(report)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Only reached without `stop` (an error on the way): never leave a process behind.
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
