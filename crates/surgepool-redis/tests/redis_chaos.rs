//! Chaos, bounded in time: 3 consumer processes drain 20,000 jobs while one consumer is
//! killed with SIGKILL twice and redis-server once (restarted on its AOF, `appendfsync
//! always`). Every job is recorded by its handler in an append-only file per process; at the
//! end every pushed job is recorded (none lost) and the duplicates are at most the jobs that
//! were in flight at the kills.
//!
//! It runs in `cargo test --workspace` (about 11 s on a busy 2-core machine). The consumer
//! processes are this test binary, re-run on the `#[ignore]`d `chaos_consumer_child`.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use surgepool_redis::{Consumer, FleetStats, Job, Queue};

use support::*;

const JOBS: usize = 20_000;
const CONSUMERS: usize = 3;
const LEASE_FLOOR: Duration = Duration::from_secs(1);
const QUEUE: &str = "chaos";

/// One consumer process; killed with SIGKILL on drop if still running.
struct ChildConsumer {
    name: String,
    child: Child,
}

impl ChildConsumer {
    fn spawn(url: &str, name: &str, sink: &Path, stop: &Path) -> ChildConsumer {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "chaos_consumer_child",
                "--nocapture",
            ])
            .env("CHAOS_URL", url)
            .env("CHAOS_NAME", name)
            .env("CHAOS_SINK", sink)
            .env("CHAOS_STOP", stop)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        ChildConsumer {
            name: name.to_owned(),
            child,
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildConsumer {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn pending_of(fleet: &FleetStats, name: &str) -> u64 {
    fleet
        .consumers
        .iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, p)| *p)
}

async fn wait_waiting_below(queue: &Queue, n: u64) {
    wait_for("backlog progress", || async {
        matches!(queue.fleet().await, Ok(f) if f.waiting() < n)
    })
    .await;
}

/// Kills consumer `i` with SIGKILL; returns its pending jobs and how long until another
/// consumer had taken them all over.
async fn kill_consumer(queue: &Queue, c: &mut ChildConsumer) -> (u64, Duration) {
    c.kill9();
    let killed_at = Instant::now();
    let held = pending_of(&queue.fleet().await.unwrap(), &c.name);
    let name = c.name.clone();
    wait_for("the killed consumer's jobs taken over", || async {
        matches!(queue.fleet().await, Ok(f) if pending_of(&f, &name) == 0)
    })
    .await;
    (held, killed_at.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kill_consumers_and_redis() {
    let Some(mut server) = server("chaos_kill_consumers_and_redis") else {
        return;
    };
    let url = server.url();
    let dir: PathBuf = server.dir().join("sinks");
    std::fs::create_dir_all(&dir).unwrap();
    let stop = dir.join("stop");
    let queue = queue(&server, QUEUE).await;
    queue
        .push_many((0..JOBS).map(|i| format!("{i}").into_bytes()))
        .await
        .unwrap();

    let mut generation = 0;
    let mut spawn = |slot: usize| {
        generation += 1;
        let name = format!("c{slot}-g{generation}");
        ChildConsumer::spawn(&url, &name, &dir.join(format!("{name}.log")), &stop)
    };
    let mut children: Vec<ChildConsumer> = (0..CONSUMERS).map(&mut spawn).collect();
    let mut dup_bound = 0;

    wait_waiting_below(&queue, (JOBS * 4 / 5) as u64).await;
    let (held1, took1) = kill_consumer(&queue, &mut children[0]).await;
    children[0] = spawn(0);
    dup_bound += held1;

    wait_waiting_below(&queue, (JOBS * 3 / 5) as u64).await;
    let before = queue.fleet().await.unwrap();
    server.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart().unwrap();
    // At most the jobs pending at the kill can run twice (if their leases lapsed meanwhile).
    dup_bound += before.pending;

    wait_waiting_below(&queue, (JOBS * 2 / 5) as u64).await;
    let (held2, took2) = kill_consumer(&queue, &mut children[0]).await;
    children[0] = spawn(0);
    dup_bound += held2;

    wait_for("every job settled", || async {
        matches!(queue.fleet().await, Ok(f) if f.waiting() == 0 && f.pending == 0)
    })
    .await;
    std::fs::write(&stop, b"stop").unwrap();
    for c in &mut children {
        let status = c.child.wait().unwrap();
        assert!(status.success(), "{} exited with {status}", c.name);
    }

    let mut runs: HashMap<String, u64> = HashMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                *runs.entry(line.to_owned()).or_default() += 1;
            }
        }
    }
    let missing: Vec<usize> = (0..JOBS)
        .filter(|i| !runs.contains_key(&i.to_string()))
        .collect();
    let duplicates: u64 = runs.values().map(|n| n - 1).sum();
    eprintln!(
        "chaos: {JOBS} jobs, {} recorded, {} missing, {duplicates} duplicates (bound {dup_bound}: \
         {held1} + {} + {held2} in flight at the kills); killed consumers' jobs taken over in \
         {took1:?} and {took2:?} (lease floor {LEASE_FLOOR:?})",
        runs.len(),
        missing.len(),
        before.pending,
    );
    assert!(
        missing.is_empty(),
        "lost jobs: {:?}",
        &missing[..missing.len().min(20)]
    );
    assert!(
        duplicates <= dup_bound,
        "duplicates {duplicates} > bound {dup_bound}"
    );
    let fleet = queue.fleet().await.unwrap();
    assert_eq!((fleet.dead, fleet.waiting(), fleet.pending), (0, 0, 0));
}

/// The consumer process of the chaos test: runs only when spawned by it (CHAOS_URL set).
#[test]
#[ignore = "a child process of chaos_kill_consumers_and_redis"]
fn chaos_consumer_child() {
    let (Ok(url), Ok(name), Ok(sink), Ok(stop)) = (
        std::env::var("CHAOS_URL"),
        std::env::var("CHAOS_NAME"),
        std::env::var("CHAOS_SINK"),
        std::env::var("CHAOS_STOP"),
    ) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // Redis may be down (killed by the test) while this process starts: retry, as a
        // worker's supervisor would.
        let mut tries = 0;
        let queue = loop {
            match Queue::builder(&url, QUEUE)
                .op_timeout(Duration::from_millis(500))
                .connect()
                .await
            {
                Ok(q) => break q,
                Err(e) if tries < 100 => {
                    tries += 1;
                    eprintln!("chaos child: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("chaos child: redis unreachable: {e}"),
            }
        };
        let sink = std::sync::Arc::new(std::sync::Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(sink)
                .unwrap(),
        ));
        let consumer = Consumer::builder(queue, move |job: Job| {
            let sink = sink.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                // Recorded before the ack: a kill in between runs the job again (a counted
                // duplicate), never loses it.
                let line = format!("{}\n", String::from_utf8_lossy(job.payload()));
                std::io::Write::write_all(&mut *sink.lock().unwrap(), line.as_bytes())
                    .map_err(|e| e.to_string())
            }
        })
        .name(name)
        .lease_bounds(LEASE_FLOOR, Duration::from_secs(30))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(200))
        .drain_grace(Duration::from_secs(5))
        .build()
        .unwrap();
        let stop_file = PathBuf::from(stop);
        consumer
            .run_until(async move {
                while !stop_file.exists() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .unwrap();
    });
}
