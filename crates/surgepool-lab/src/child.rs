//! Running one strategy in a child process of the lab's own binary, under a memory cap.
//!
//! Each strategy gets a fresh process so that one cannot pollute another (heap, allocator
//! caches, runtime threads) and so that a strategy that would eat the machine can be stopped
//! from outside. The child is the same executable re-invoked with a hidden argument; it
//! prints JSON lines on stdout (periodic samples, then one result), which the parent hands
//! to a callback as they arrive.
//!
//! The parent samples the child's RSS itself, from `/proc/<pid>/statm`, 20 times a second,
//! and kills the child (`SIGKILL`) the moment a reading passes the cap: the child is never
//! trusted to stop itself, because a process that is out of memory cannot be relied on to
//! do anything. A wall-clock timeout catches a child that hangs.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::rss::{self, RssSeries, Target};

/// How a supervised child ended.
#[derive(Debug)]
pub(crate) struct ChildOutcome {
    /// Its exit status (after a kill, the kill's).
    pub(crate) status: ExitStatus,
    /// `Some(after)` when it was killed at the memory cap, `after` its start.
    pub(crate) stopped_at_cap: Option<Duration>,
    /// `true` when it was killed at the wall-clock timeout.
    pub(crate) timed_out: bool,
    /// Its RSS as the parent saw it.
    pub(crate) rss: RssSeries,
    /// How long it ran.
    pub(crate) ran: Duration,
}

/// Limits the parent enforces on a child.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Kill the child when its RSS passes this many bytes.
    pub(crate) mem_cap_bytes: u64,
    /// Kill the child when it runs longer than this.
    pub(crate) timeout: Duration,
}

/// What the parent sees while a child runs: called for every stdout line, and about every
/// [`rss::SAMPLE_EVERY`] with the child's elapsed time and latest RSS.
pub(crate) trait Observer {
    /// A line the child printed on stdout.
    fn line(&mut self, line: &str);
    /// A tick: elapsed since start, latest RSS.
    fn tick(&mut self, elapsed: Duration, rss_bytes: u64);
}

/// Runs the current executable with `args` and supervises it until it exits or is killed.
/// Its stderr is passed through.
pub(crate) fn run_self(
    args: &[String],
    limits: Limits,
    observer: &mut dyn Observer,
) -> anyhow::Result<ChildOutcome> {
    let exe = std::env::current_exe().context("cannot find the lab's own executable")?;
    let mut child = Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start child process {}", exe.display()))?;
    let started = Instant::now();
    let pid = child.id();
    // If the child dies before the first reading, the sampler has nothing to read: report
    // an empty series rather than fail.
    let sampler = rss::RssSampler::start(Target::Pid(pid)).ok();

    let stdout = child
        .stdout
        .take()
        .context("child stdout was not captured")?;
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let reader = thread::Builder::new()
        .name("child-stdout".into())
        .spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if lines_tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        })
        .context("cannot start the child's reader thread")?;

    let mut stopped_at_cap = None;
    let mut timed_out = false;
    let status = loop {
        // Lines first, so the observer has every sample up to the moment of a kill.
        while let Ok(line) = lines_rx.try_recv() {
            observer.line(&line);
        }
        if let Some(status) = child.try_wait().context("cannot wait for the child")? {
            break status;
        }
        let elapsed = started.elapsed();
        // A direct reading as well as the sampler's: the cap check must not lag a sample.
        let now_rss = rss::rss_bytes(Target::Pid(pid)).unwrap_or(0);
        let latest = sampler
            .as_ref()
            .map_or(now_rss, |s| s.latest().max(now_rss));
        observer.tick(elapsed, latest);
        if latest > limits.mem_cap_bytes {
            stopped_at_cap = Some((elapsed, latest));
            let _ = child.kill();
            break child.wait().context("cannot reap the killed child")?;
        }
        if elapsed > limits.timeout {
            timed_out = true;
            let _ = child.kill();
            break child.wait().context("cannot reap the killed child")?;
        }
        thread::sleep(rss::SAMPLE_EVERY);
    };
    let ran = started.elapsed();
    let _ = reader.join();
    while let Ok(line) = lines_rx.try_recv() {
        observer.line(&line);
    }
    let mut series = sampler.map(|s| s.finish()).unwrap_or_default();
    if let Some((at, bytes)) = stopped_at_cap {
        // The reading that triggered the kill may be newer than the sampler's last one.
        series.peak = series.peak.max(bytes);
        series.points.push(rss::RssPoint {
            t_s: at.as_secs_f64(),
            bytes,
        });
    }
    Ok(ChildOutcome {
        status,
        stopped_at_cap: stopped_at_cap.map(|(at, _)| at),
        timed_out,
        rss: series,
        ran,
    })
}

/// In the child: writes one JSON value as a line on stdout, flushed at once so the parent
/// has it even if the process is killed a moment later.
pub(crate) fn emit<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut line = serde_json::to_string(value)?;
    line.push('\n');
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.flush()?;
    Ok(())
}
