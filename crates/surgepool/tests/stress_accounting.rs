//! The stress test of issue 2: 8 submitter threads offer 200,000 random tasks to a `Pool`
//! on a 2-thread runtime (some panic, some are aborted through their handles, some yield
//! or sleep, some carry deadlines that expire in the queue, most complete), through
//! `try_submit`, `submit_timeout` and `try_submit_with_deadline`, while a monitor thread
//! checks the identities in snapshots taken mid-flight and another thread calls
//! `shutdown` once half of the offers were made. Afterwards:
//!
//! * every offer is counted exactly once: `submitted` equals the number of offers;
//! * every rejected future came back to its submitter (`rejected` equals that count);
//! * every accepted task's handle resolved with exactly one outcome, and the outcomes
//!   counted from the handles equal the snapshot's `completed`, `panicked`, `cancelled`
//!   and `shed`, with nothing left queued or running;
//! * both identities hold exactly.
//!
//! The same for the `BlockingPool` (20,000 closures: threads make each one dearer), with
//! `shutdown_timeout` in the middle so that queued closures are cancelled too.
//!
//! Randomness is a seeded xorshift, so a failure reproduces with the printed seed
//! (`SURGEPOOL_STRESS_SEED=<n>`). The interleavings differ run to run: that is the point.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::time::Duration;

use surgepool::{BlockingPool, Limit, Pool, Snapshot, SubmitError, TaskError};
use tokio::time::Instant;

const SUBMITTERS: u64 = 8;
/// The 200,000; a debug build on 2 busy cores runs it in well under 30 s.
const POOL_TASKS: u64 = 200_000;
const BLOCKING_TASKS: u64 = 20_000;

/// xorshift64*: small, seeded, good enough to pick task kinds.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    let seed = std::env::var("SURGEPOOL_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("stress seed: SURGEPOOL_STRESS_SEED={seed}");
    seed
}

mod support;
use support::assert_identities;

/// Outcomes as counted from the handles (and the refusals as counted by submitters).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    offered: u64,
    returned: u64,
    completed: u64,
    panicked: u64,
    cancelled: u64,
    shed: u64,
}

impl Tally {
    fn outcome<T>(&mut self, result: Result<T, TaskError>) {
        match result {
            Ok(_) => self.completed += 1,
            Err(e) if e.is_panic() => self.panicked += 1,
            Err(e) if e.is_cancelled() => self.cancelled += 1,
            Err(e) if e.is_shed() => self.shed += 1,
            Err(e) => panic!("an outcome that is none of the four: {e:?}"),
        }
    }
    fn add(&mut self, o: Tally) {
        self.offered += o.offered;
        self.returned += o.returned;
        self.completed += o.completed;
        self.panicked += o.panicked;
        self.cancelled += o.cancelled;
        self.shed += o.shed;
    }
    fn check(&self, s: &Snapshot, total: u64) {
        assert_eq!(self.offered, total);
        assert_eq!(s.submitted, total, "every offer counted once: {s:?}");
        assert_eq!(
            s.rejected, self.returned,
            "every rejection came back: {s:?}"
        );
        assert_eq!(
            (s.completed, s.panicked, s.cancelled, s.shed),
            (self.completed, self.panicked, self.cancelled, self.shed),
            "snapshot vs handles ({self:?}): {s:?}"
        );
        assert_eq!((s.queued, s.running), (0, 0), "{s:?}");
        assert_identities(s);
    }
}

/// Runs the two stress tests one at a time (they would only fight for the two cores) and
/// silences the expected panics' printout meanwhile (the hook is process-wide).
fn exclusive() -> impl Drop {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    struct Restore(#[allow(dead_code)] MutexGuard<'static, ()>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = std::panic::take_hook();
        }
    }
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    std::panic::set_hook(Box::new(|_| {}));
    Restore(guard)
}

/// Takes snapshots until told to stop; every one must satisfy the identities.
fn monitor(
    snapshot: impl Fn() -> Snapshot + Send + 'static,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let t = std::thread::spawn(move || {
        let mut taken = 0;
        while !s.load(Ordering::Relaxed) {
            assert_identities(&snapshot());
            taken += 1;
            std::thread::yield_now();
        }
        taken
    });
    (stop, t)
}

#[test]
fn pool_stress_with_a_shutdown_in_the_middle() {
    let _one = exclusive();
    let seed = seed();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let pool = Pool::builder()
        .runtime(rt.handle().clone())
        .limit(Limit::fixed(16))
        .queue_capacity(256)
        .build()
        .unwrap();
    let progress = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(SUBMITTERS as usize + 1));
    let (stop_monitor, monitor) = monitor({
        let pool = pool.clone();
        move || pool.snapshot()
    });
    let per_thread = POOL_TASKS / SUBMITTERS;
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|t| {
            let (pool, rt, progress, start) = (
                pool.clone(),
                rt.handle().clone(),
                progress.clone(),
                start.clone(),
            );
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (t + 1));
                let mut tally = Tally::default();
                let mut handles = Vec::with_capacity(per_thread as usize);
                start.wait();
                for _ in 0..per_thread {
                    let kind = rng.below(100);
                    let yields = rng.below(3);
                    let task = async move {
                        for _ in 0..yields {
                            tokio::task::yield_now().await;
                        }
                        match kind {
                            0..=4 => panic!("planned panic"),
                            5 => tokio::time::sleep(Duration::from_millis(1)).await,
                            _ => {}
                        }
                        kind
                    };
                    let how = rng.below(10);
                    tally.offered += 1;
                    let result = match how {
                        0..=2 => pool.try_submit(task),
                        // Waiting submits throttle the submitters, so that many offers
                        // are accepted before the shutdown.
                        3..=6 => rt.block_on(pool.submit(task)),
                        7..=8 => {
                            let wait = Duration::from_micros(rng.below(500));
                            rt.block_on(pool.submit_timeout(task, wait))
                        }
                        // A deadline that has passed: shed if it has to queue.
                        _ => pool.try_submit_with_deadline(task, Instant::now()),
                    };
                    progress.fetch_add(1, Ordering::Relaxed);
                    match result {
                        Ok(handle) => {
                            if rng.below(10) == 0 {
                                handle.abort();
                            }
                            handles.push(handle);
                        }
                        Err(e) => {
                            assert!(
                                matches!(
                                    e,
                                    SubmitError::Full(_)
                                        | SubmitError::Closed(_)
                                        | SubmitError::Timeout(_)
                                ),
                                "{e:?}"
                            );
                            // The future came back, unpolled: drop it here.
                            drop(e.into_inner());
                            tally.returned += 1;
                        }
                    }
                }
                for handle in handles {
                    tally.outcome(rt.block_on(handle));
                }
                tally
            })
        })
        .collect();
    let shutdown = {
        let (pool, rt, progress) = (pool.clone(), rt.handle().clone(), progress.clone());
        std::thread::spawn(move || {
            while progress.load(Ordering::Relaxed) < POOL_TASKS / 2 {
                std::thread::yield_now();
            }
            rt.block_on(pool.shutdown())
        })
    };
    start.wait();
    let mut tally = Tally::default();
    for s in submitters {
        tally.add(s.join().unwrap());
    }
    let report = shutdown.join().unwrap();
    stop_monitor.store(true, Ordering::Relaxed);
    let snapshots = monitor.join().unwrap();
    let s = pool.snapshot();
    eprintln!("pool: {tally:?}, {report:?}, {snapshots} mid-flight snapshots");
    tally.check(&s, POOL_TASKS);
    assert!(!report.timed_out);
    assert!(report.drained <= s.accepted);
    assert_eq!(s.workers, 0, "{s:?}");
    assert_eq!(pool.limiter_stats().in_flight, 0);
    // The run exercised every path it claims to.
    assert!(
        tally.completed > 0 && tally.panicked > 0 && tally.cancelled > 0,
        "{tally:?}"
    );
    assert!(tally.returned > 0, "{tally:?}");
}

#[test]
fn blocking_pool_stress_with_a_shutdown_timeout_in_the_middle() {
    let _one = exclusive();
    let seed = seed();
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(4))
        .queue_capacity(64)
        .idle_timeout(Duration::from_millis(1))
        .build()
        .unwrap();
    let progress = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(SUBMITTERS as usize + 1));
    let (stop_monitor, monitor) = monitor({
        let pool = pool.clone();
        move || pool.snapshot()
    });
    let per_thread = BLOCKING_TASKS / SUBMITTERS;
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|t| {
            let (pool, progress, start) = (pool.clone(), progress.clone(), start.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (t + 101));
                let mut tally = Tally::default();
                let mut handles = Vec::with_capacity(per_thread as usize);
                start.wait();
                for _ in 0..per_thread {
                    let kind = rng.below(100);
                    let job = move || {
                        match kind {
                            0..=4 => panic!("planned panic"),
                            5 => std::thread::sleep(Duration::from_micros(50)),
                            6..=9 => std::thread::yield_now(),
                            _ => {}
                        }
                        kind
                    };
                    tally.offered += 1;
                    let result = match rng.below(10) {
                        0..=2 => pool.try_submit(job),
                        3..=6 => pool.submit_timeout(job, Duration::from_secs(60)),
                        7..=8 => pool.submit_timeout(job, Duration::from_micros(rng.below(500))),
                        _ => pool.try_submit_with_deadline(job, Instant::now()),
                    };
                    progress.fetch_add(1, Ordering::Relaxed);
                    match result {
                        Ok(handle) => handles.push(handle),
                        Err(e) => {
                            let _job = e.into_inner();
                            tally.returned += 1;
                        }
                    }
                }
                for handle in handles {
                    tally.outcome(handle.join());
                }
                tally
            })
        })
        .collect();
    let shutdown = {
        let (pool, progress) = (pool.clone(), progress.clone());
        std::thread::spawn(move || {
            while progress.load(Ordering::Relaxed) < BLOCKING_TASKS / 2 {
                std::thread::yield_now();
            }
            // A short grace: what still waits in the queue then is cancelled.
            pool.shutdown_timeout(Duration::from_micros(100))
        })
    };
    start.wait();
    let mut tally = Tally::default();
    for s in submitters {
        tally.add(s.join().unwrap());
    }
    let first = shutdown.join().unwrap();
    // Closures that were running at the deadline finish in the background: wait for them.
    let report = pool.shutdown();
    stop_monitor.store(true, Ordering::Relaxed);
    let snapshots = monitor.join().unwrap();
    let s = pool.snapshot();
    eprintln!("blocking: {tally:?}, {first:?} then {report:?}, {snapshots} snapshots");
    tally.check(&s, BLOCKING_TASKS);
    assert_eq!(report.cancelled, first.cancelled);
    assert_eq!(s.workers, 0, "{s:?}");
    assert_eq!(pool.limiter_stats().in_flight, 0);
    assert!(tally.completed > 0 && tally.panicked > 0, "{tally:?}");
}
