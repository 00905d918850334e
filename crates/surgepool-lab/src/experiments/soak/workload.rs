//! The soak's mixed workload, each part on its own task or thread until the deadline:
//! a long-lived async `Pool` (waiting, CPU and panicking tasks, aborts, deadlines, detached
//! spawns, bursts that make it shed), a long-lived `BlockingPool`, pools created and shut
//! down in a loop, and the tower layer under an open-loop HTTP load on loopback.
//!
//! The batcher's part is in `batcher.rs`.
//!
//! Every part counts what it saw end; `lost` is what the pool accepted and never accounted
//! for, or a handle that never resolved. Snapshots of the long-lived pools are checked
//! against the identities ten times a second.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use surgepool::{BlockingHandle, BlockingPool, Limit, Pool, Snapshot, TaskError};
use tokio::time::{timeout, Instant};

use crate::http_load::{self, OpenLoop, RequestTemplate, Target};
use crate::server::{self, LayerChoice, ServerConfig};
use crate::work::{spin_cpu, WorkKind};

/// The payload of the panics the workload provokes; the soak's panic hook keeps them quiet.
pub(crate) const INTENDED_PANIC: &str = "soak: intended panic";

/// A handle not resolved after this is counted as lost.
pub(crate) const HANDLE_BOUND: Duration = Duration::from_secs(30);

/// What one part of the workload saw, at its end.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct PartResult {
    pub(crate) name: String,
    pub(crate) submitted: u64,
    pub(crate) accepted: u64,
    pub(crate) rejected: u64,
    pub(crate) completed: u64,
    pub(crate) panicked: u64,
    pub(crate) cancelled: u64,
    pub(crate) shed: u64,
    /// HTTP only: other statuses, connection errors and timeouts.
    pub(crate) failed: u64,
    /// Accepted and never accounted for, plus handles that never resolved.
    pub(crate) lost: u64,
    /// Snapshots checked against the identities, and how many broke one.
    pub(crate) snapshots_checked: u64,
    pub(crate) identities_violations: u64,
    /// Outcomes that contradict their input (the batcher's part checks each one).
    pub(crate) wrong_outcomes: u64,
    /// Pools built and shut down (the churn part), HTTP requests offered (the http part).
    pub(crate) cycles: u64,
}

/// Counters of one part (each part has its own), and the count of tasks seen ending, which
/// every part adds to and the sampler reads.
#[derive(Debug, Default)]
pub(crate) struct Live {
    /// Tasks seen ending, all parts together (for the series): shared by every part.
    pub(crate) done: Arc<AtomicU64>,
    unresolved: AtomicU64,
    snapshots: AtomicU64,
    violations: AtomicU64,
}

impl Live {
    /// A part's counters, adding its ended tasks to `done`.
    pub(crate) fn new(done: Arc<AtomicU64>) -> Arc<Live> {
        Arc::new(Live {
            done,
            ..Live::default()
        })
    }

    /// Checks a snapshot against API.md's identities.
    pub(crate) fn check(&self, s: &Snapshot) -> bool {
        let ok = s.submitted == s.accepted + s.rejected
            && s.accepted == s.completed + s.panicked + s.cancelled + s.shed + s.queued + s.running;
        self.record_check(ok, || format!("{s:?}"));
        ok
    }

    /// Counts one snapshot checked, and prints it when it broke an identity.
    pub(crate) fn record_check(&self, ok: bool, snapshot: impl FnOnce() -> String) {
        self.snapshots.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.violations.fetch_add(1, Ordering::Relaxed);
            eprintln!("soak: identities broken: {}", snapshot());
        }
    }

    /// Counts a handle or receipt that did not resolve within [`HANDLE_BOUND`].
    pub(crate) fn unresolved(&self) {
        self.unresolved.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn take_checks(&self) -> (u64, u64, u64) {
        (
            self.snapshots.swap(0, Ordering::Relaxed),
            self.violations.swap(0, Ordering::Relaxed),
            self.unresolved.swap(0, Ordering::Relaxed),
        )
    }
}

/// The final accounting of a drained pool: lost is what its counters fail to explain.
fn result(name: &str, s: &Snapshot, live: &Live) -> PartResult {
    let (snapshots_checked, identities_violations, unresolved) = live.take_checks();
    let ended = s.completed + s.panicked + s.cancelled + s.shed;
    PartResult {
        name: name.to_owned(),
        submitted: s.submitted,
        accepted: s.accepted,
        rejected: s.rejected,
        completed: s.completed,
        panicked: s.panicked,
        cancelled: s.cancelled,
        shed: s.shed,
        failed: 0,
        lost: s.accepted.abs_diff(ended) + s.queued + s.running + unresolved,
        snapshots_checked,
        identities_violations,
        wrong_outcomes: 0,
        cycles: 0,
    }
}

async fn waiting(ms: u64) {
    let buffer = vec![1u8; 4096];
    tokio::time::sleep(Duration::from_millis(ms)).await;
    drop(std::hint::black_box(buffer));
}

pub(crate) fn intended_panic() -> ! {
    std::panic::panic_any(INTENDED_PANIC)
}

/// Awaits a handle on its own task, counting it as lost if it never resolves.
fn collect<T: Send + 'static>(handle: surgepool::TaskHandle<T>, live: Arc<Live>) {
    tokio::spawn(async move {
        match timeout(HANDLE_BOUND, handle).await {
            Ok(_) => {
                live.done.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => live.unresolved(),
        }
    });
}

/// The arrivals of the long-lived parts: 2 every millisecond (~2000 a second), and a burst
/// of 3000 every 5 s, more than the queues hold.
pub(crate) struct Arrivals {
    tick: tokio::time::Interval,
    last_burst: Instant,
}

impl Arrivals {
    pub(crate) fn new() -> Arrivals {
        Arrivals {
            tick: tokio::time::interval(Duration::from_millis(1)),
            last_burst: Instant::now(),
        }
    }

    /// Waits for the next millisecond; how many to submit now.
    pub(crate) async fn next(&mut self) -> u64 {
        self.tick.tick().await;
        if self.last_burst.elapsed() >= Duration::from_secs(5) {
            self.last_burst = Instant::now();
            3000
        } else {
            2
        }
    }
}

/// The long-lived async pool: ~2000 tasks a second, a burst of 3000 every 5 s.
pub(crate) async fn async_pool(until: Instant, live: Arc<Live>) -> anyhow::Result<PartResult> {
    let pool = Pool::builder()
        .limit(Limit::adaptive())
        .queue_capacity(512)
        .queue_timeout(Duration::from_millis(50))
        .on_panic(|_: &TaskError| {})
        .build()?;
    let checker = spawn_checker(until, live.clone(), {
        let pool = pool.clone();
        move || pool.snapshot()
    });
    let mut arrivals = Arrivals::new();
    let mut i: u64 = 0;
    while Instant::now() < until {
        for _ in 0..arrivals.next().await {
            i += 1;
            submit_one(&pool, i, &live);
        }
    }
    let report = pool.shutdown_timeout(Duration::from_secs(5)).await;
    if report.timed_out {
        eprintln!("soak: async pool drained late: {report:?}");
    }
    // Let the collectors see the last handles resolve.
    tokio::time::sleep(Duration::from_millis(100)).await;
    checker.await?;
    Ok(result("async_pool", &pool.snapshot(), &live))
}

fn submit_one(pool: &Pool, i: u64, live: &Arc<Live>) {
    let ms = 1 + i % 4;
    match i % 100 {
        0 => {
            if let Ok(h) = pool.try_submit(async { intended_panic() }) {
                collect::<()>(h, live.clone());
            }
        }
        1..=4 => {
            if let Ok(h) = pool.try_submit(waiting(20)) {
                // Aborted while queued or while running, whichever it is by then.
                let live = live.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    h.abort();
                    collect(h, live);
                });
            }
        }
        5..=9 => {
            let deadline = Instant::now() + Duration::from_millis(2);
            if let Ok(h) = pool.try_submit_with_deadline(waiting(ms), deadline) {
                collect(h, live.clone());
            }
        }
        10..=19 => {
            if let Ok(h) = pool.try_submit(async { spin_cpu(Duration::from_micros(20)) }) {
                collect(h, live.clone());
            }
        }
        20..=39 => {
            let live = live.clone();
            let _ = pool.try_spawn(async move {
                waiting(ms).await;
                live.done.fetch_add(1, Ordering::Relaxed);
            });
        }
        _ => {
            if let Ok(h) = pool.try_submit(waiting(ms)) {
                collect(h, live.clone());
            }
        }
    }
}

/// Checks a long-lived pool's snapshot ten times a second until `until`.
fn spawn_checker(
    until: Instant,
    live: Arc<Live>,
    snapshot: impl Fn() -> Snapshot + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while Instant::now() < until {
            live.check(&snapshot());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// The long-lived blocking pool, driven from its own thread: ~500 closures a second.
pub(crate) fn blocking_pool(until: Instant, live: Arc<Live>) -> anyhow::Result<PartResult> {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(2))
        .queue_capacity(64)
        .queue_timeout(Duration::from_millis(20))
        .on_panic(|_: &TaskError| {})
        .build()?;
    let mut handles: VecDeque<BlockingHandle<()>> = VecDeque::new();
    let mut i: u64 = 0;
    let mut last_check = Instant::now();
    while Instant::now() < until {
        i += 1;
        match i % 50 {
            0 => {
                if let Ok(h) = pool.try_submit(|| intended_panic()) {
                    handles.push_back(h);
                }
            }
            1..=10 => {
                let live = live.clone();
                let _ = pool.try_spawn(move || {
                    std::thread::sleep(Duration::from_millis(1));
                    live.done.fetch_add(1, Ordering::Relaxed);
                });
            }
            11..=30 => {
                if let Ok(h) = pool.try_submit(|| spin_cpu(Duration::from_micros(200))) {
                    handles.push_back(h);
                }
            }
            _ => {
                if let Ok(h) = pool.try_submit(|| std::thread::sleep(Duration::from_millis(1))) {
                    handles.push_back(h);
                }
            }
        }
        // Join what has finished, oldest first.
        while handles.front().is_some_and(BlockingHandle::is_finished) {
            let _ = handles.pop_front().map(BlockingHandle::join);
            live.done.fetch_add(1, Ordering::Relaxed);
        }
        if last_check.elapsed() >= Duration::from_millis(100) {
            live.check(&pool.snapshot());
            last_check = Instant::now();
        }
        std::thread::sleep(Duration::from_micros(1500));
    }
    pool.shutdown();
    for h in handles {
        let _ = h.join();
        live.done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(result("blocking_pool", &pool.snapshot(), &live))
}

/// Pools built, loaded and shut down in a loop, alternating a full drain with a short
/// grace; every fifth cycle a blocking pool too.
pub(crate) async fn churn(until: Instant, live: Arc<Live>) -> anyhow::Result<PartResult> {
    let mut total = PartResult {
        name: "pool_churn".to_owned(),
        ..PartResult::default()
    };
    let mut cycle: u64 = 0;
    while Instant::now() < until {
        cycle += 1;
        let pool = Pool::builder()
            .limit(Limit::fixed(4))
            .queue_capacity(16)
            .on_panic(|_: &TaskError| {})
            .build()?;
        for j in 0..30u64 {
            // Rejections (full) are counted by the pool; nothing to do with the future.
            let _ = match j % 10 {
                0 => pool.try_spawn(async { intended_panic() }).is_ok(),
                1..=5 => pool.try_spawn(waiting(1 + j % 3)).is_ok(),
                _ => pool.try_spawn(async {}).is_ok(),
            };
        }
        if cycle.is_multiple_of(2) {
            pool.shutdown().await;
        } else {
            pool.shutdown_timeout(Duration::from_millis(1)).await;
        }
        add(&mut total, &pool.snapshot(), &live);
        if cycle.is_multiple_of(5) {
            let blocking = BlockingPool::builder()
                .limit(Limit::fixed(2))
                .queue_capacity(8)
                .on_panic(|_: &TaskError| {})
                .build()?;
            for j in 0..10u64 {
                let _ = if j == 0 {
                    blocking.try_spawn(|| intended_panic()).is_ok()
                } else {
                    blocking
                        .try_spawn(|| spin_cpu(Duration::from_micros(100)))
                        .is_ok()
                };
            }
            blocking.shutdown();
            add(&mut total, &blocking.snapshot(), &live);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    total.cycles = cycle;
    Ok(total)
}

fn add(total: &mut PartResult, s: &Snapshot, live: &Live) {
    live.check(s);
    let part = result("", s, live);
    live.done.fetch_add(s.accepted, Ordering::Relaxed);
    total.submitted += part.submitted;
    total.accepted += part.accepted;
    total.rejected += part.rejected;
    total.completed += part.completed;
    total.panicked += part.panicked;
    total.cancelled += part.cancelled;
    total.shed += part.shed;
    total.lost += part.lost;
    total.snapshots_checked += part.snapshots_checked;
    total.identities_violations += part.identities_violations;
}

/// The lab's server with the adaptive admission layer, under 300 requests a second of
/// open-loop load in 5 s rounds. Accepted = answered 2xx, rejected = 503; lost is what the
/// generator's counters fail to explain.
pub(crate) async fn http(until: Instant, live: Arc<Live>) -> anyhow::Result<PartResult> {
    let (app, _layer) = server::app(ServerConfig {
        layer: LayerChoice::Adaptive,
        work: WorkKind::Sleep,
        service_time: Duration::from_millis(5),
        alloc_bytes: 16 * 1024,
        queue: 0,
        deadline: None,
        faults: None,
    })?;
    let listener = server::bind("127.0.0.1:0".parse()?).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(
        listener,
        app,
        server::Timeouts::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let target = Target::parse_loopback(&format!("http://{addr}/work"))?;
    let mut total = PartResult {
        name: "http_layer".to_owned(),
        ..PartResult::default()
    };
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(500) {
            break;
        }
        let report = http_load::open_loop(OpenLoop {
            target: target.clone(),
            rate: 300.0,
            duration: left.min(Duration::from_secs(5)),
            connections: 32,
            deadline: Duration::from_secs(2),
            warm_path: Some("/hello".to_owned()),
            // 3 × the 5 ms service time, as the lab's other experiments judge it.
            slo: Duration::from_millis(15),
            request: RequestTemplate::default(),
        })
        .await?;
        let answered: u64 = report.statuses.values().sum();
        let shed = report.status(503);
        total.cycles += 1;
        total.submitted += report.offered;
        total.rejected += shed;
        total.accepted += report.offered - shed.min(report.offered);
        total.completed += report.ok();
        // Other statuses, connection errors and timeouts: failed requests, still explained.
        total.failed += answered - report.ok() - shed + report.errors + report.timeouts;
        total.cancelled += report.unsent;
        let explained = answered + report.errors + report.timeouts + report.unsent;
        total.lost += report.offered.abs_diff(explained);
        live.done.fetch_add(answered, Ordering::Relaxed);
    }
    let _ = stop.send(());
    timeout(Duration::from_secs(10), server)
        .await
        .map_err(|_| anyhow::anyhow!("the soak's HTTP server did not drain in 10 s"))???;
    Ok(total)
}
