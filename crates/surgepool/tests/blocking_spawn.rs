//! Detached closures (`try_spawn`, `spawn_timeout`): they run and are counted exactly like
//! closures with a handle; a refusal (`Full`, `Closed`, `Timeout`) hands the closure back
//! unrun; a panic is counted and reaches the `on_panic` hook while the pool lives on;
//! shutdown drains them, and its grace deadline cancels those still queued; queue
//! management sheds them; a closure too large to be stored inline works the same.
//!
//! Every wait is on a channel, a barrier or a pool call; no sleep decides an outcome.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::time::Duration;

use surgepool::{BlockingPool, Limit, SubmitError};

mod support;
use support::assert_identities;

fn pool(limit: usize, queue: usize) -> BlockingPool {
    BlockingPool::builder()
        .limit(Limit::fixed(limit))
        .queue_capacity(queue)
        .build()
        .unwrap()
}

/// Spawns a detached closure that holds its slot until the returned sender is used (or
/// dropped); returns once it is running.
fn blocker(pool: &BlockingPool) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    pool.try_spawn(move || {
        started_tx.send(()).unwrap();
        let _ = rx.recv();
    })
    .unwrap();
    started.recv().unwrap();
    tx
}

/// Counts how often the values it is cloned into are dropped.
#[derive(Clone)]
struct DropCount(Arc<AtomicU64>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Silences the panic messages of the pool's threads (the tests' expected panics); a
/// panic anywhere else (a failed assertion) is still reported.
fn quiet() -> impl Drop {
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            // `take_hook` panics on a panicking thread: leave the hook to the next test.
            if !std::thread::panicking() {
                let _ = std::panic::take_hook();
            }
        }
    }
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        if !name.starts_with("surgepool-blocking") {
            default(info);
        }
    }));
    Restore
}

#[test]
fn spawned_closures_run_and_are_counted() {
    let pool = pool(2, 256);
    let (tx, rx) = mpsc::channel();
    for i in 0..100u64 {
        let tx = tx.clone();
        pool.try_spawn(move || tx.send(i).unwrap()).unwrap();
    }
    drop(tx);
    // The senders are dropped as their closures end: `rx` ends after the last one.
    assert_eq!(rx.iter().sum::<u64>(), 4950);
    let report = pool.shutdown();
    assert!(!report.timed_out);
    let s = pool.snapshot();
    assert_eq!(
        (s.submitted, s.accepted, s.rejected),
        (100, 100, 0),
        "{s:?}"
    );
    assert_eq!(s.completed, 100, "{s:?}");
    assert_eq!(
        (s.queue_wait.count, s.run_time.count, s.end_to_end.count),
        (100, 100, 100),
        "every closure that ran has its latencies recorded: {s:?}"
    );
    let limiter = pool.limiter_stats();
    assert_eq!((limiter.in_flight, limiter.succeeded), (0, 100));
    assert_identities(&s);
}

#[test]
fn full_hands_the_closure_back_unrun() {
    let pool = pool(1, 1);
    let release = blocker(&pool);
    let ran = Arc::new(AtomicBool::new(false));
    let queued = ran.clone();
    pool.try_spawn(move || queued.store(true, Ordering::SeqCst))
        .unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    let mine = flag.clone();
    match pool.try_spawn(move || mine.store(true, Ordering::SeqCst)) {
        Err(SubmitError::Full(f)) => {
            assert!(
                !flag.load(Ordering::SeqCst),
                "a refused closure does not run"
            );
            // It came back whole: the caller can run it.
            f();
            assert!(flag.load(Ordering::SeqCst));
        }
        other => panic!("expected Full, got {other:?}"),
    }
    release.send(()).unwrap();
    pool.shutdown();
    assert!(ran.load(Ordering::SeqCst));
    let s = pool.snapshot();
    assert_eq!((s.submitted, s.accepted, s.rejected), (3, 2, 1), "{s:?}");
    assert_eq!(s.completed, 2, "{s:?}");
    assert_identities(&s);
}

#[test]
fn closed_hands_the_closure_back_unrun() {
    let pool = pool(1, 8);
    pool.close();
    let flag = Arc::new(AtomicBool::new(false));
    let mine = flag.clone();
    match pool.try_spawn(move || mine.store(true, Ordering::SeqCst)) {
        Err(SubmitError::Closed(f)) => {
            assert!(!flag.load(Ordering::SeqCst));
            f();
            assert!(flag.load(Ordering::SeqCst));
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    match pool.spawn_timeout(|| {}, Duration::from_secs(1)) {
        Err(SubmitError::Closed(_)) => {}
        other => panic!("expected Closed, got {other:?}"),
    }
    let s = pool.snapshot();
    assert_eq!((s.submitted, s.accepted, s.rejected), (2, 0, 2), "{s:?}");
    assert_identities(&s);
}

#[test]
fn a_panic_is_counted_and_hooked_and_the_pool_lives_on() {
    let _quiet = quiet();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let hook_seen = seen.clone();
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .on_panic(move |e| {
            assert!(e.is_panic());
            hook_seen
                .lock()
                .unwrap()
                .push(e.panic_message().unwrap_or("?").to_owned());
        })
        .build()
        .unwrap();
    pool.try_spawn(|| panic!("boom")).unwrap();
    let (tx, rx) = mpsc::channel();
    pool.try_spawn(move || tx.send(std::thread::current().id()).unwrap())
        .unwrap();
    // Under a limit of 1 the second closure starts only after the first was counted.
    rx.recv().unwrap();
    assert_eq!(*seen.lock().unwrap(), ["boom"]);
    assert_eq!(pool.snapshot().panicked, 1);
    pool.shutdown();
    let s = pool.snapshot();
    assert_eq!((s.accepted, s.completed, s.panicked), (2, 1, 1), "{s:?}");
    // A panic is not a latency sample for the limiter.
    let limiter = pool.limiter_stats();
    assert_eq!((limiter.succeeded, limiter.ignored), (1, 1));
    assert_identities(&s);
}

#[test]
fn shutdown_drains_detached_work() {
    let pool = pool(1, 16);
    let release = blocker(&pool);
    let done = Arc::new(AtomicU64::new(0));
    for _ in 0..5 {
        let done = done.clone();
        pool.try_spawn(move || {
            done.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    let shutdown = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.shutdown())
    };
    // Let the blocker go only once the shutdown began, so that it drains all six.
    while !pool.is_closed() {
        std::thread::yield_now();
    }
    assert_eq!(done.load(Ordering::SeqCst), 0);
    release.send(()).unwrap();
    let report = shutdown.join().unwrap();
    assert!(!report.timed_out);
    assert_eq!((report.drained, report.cancelled), (6, 0));
    assert_eq!(done.load(Ordering::SeqCst), 5);
    let s = pool.snapshot();
    assert_eq!((s.completed, s.queued, s.running), (6, 0, 0), "{s:?}");
    assert_identities(&s);
}

#[test]
fn shutdown_timeout_cancels_queued_detached_work() {
    let pool = pool(1, 16);
    let release = blocker(&pool);
    let ran = Arc::new(AtomicU64::new(0));
    let drops = DropCount(Arc::new(AtomicU64::new(0)));
    for _ in 0..3 {
        let (ran, capture) = (ran.clone(), drops.clone());
        pool.try_spawn(move || {
            ran.fetch_add(1, Ordering::SeqCst);
            drop(capture);
        })
        .unwrap();
    }
    // The blocker holds the only slot: the grace deadline passes with three queued.
    let report = pool.shutdown_timeout(Duration::ZERO);
    assert!(report.timed_out);
    assert_eq!(report.cancelled, 3);
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "cancelled closures never run"
    );
    assert_eq!(
        drops.0.load(Ordering::SeqCst),
        3,
        "their captures were dropped"
    );
    let s = pool.snapshot();
    assert_eq!((s.cancelled, s.running, s.queued), (3, 1, 0), "{s:?}");
    assert_identities(&s);
    // The running closure cannot be interrupted: it finishes once released.
    release.send(()).unwrap();
    pool.shutdown();
    let s = pool.snapshot();
    assert_eq!((s.accepted, s.completed, s.cancelled), (4, 1, 3), "{s:?}");
    assert_identities(&s);
}

#[test]
fn queue_timeout_sheds_a_detached_closure() {
    let timeout = Duration::from_millis(1);
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .queue_timeout(timeout)
        .build()
        .unwrap();
    let release = blocker(&pool);
    // The closure would send if it ran; its sender is dropped either way.
    let (ran_tx, ran) = mpsc::channel::<()>();
    pool.try_spawn(move || ran_tx.send(()).unwrap()).unwrap();
    // A precondition, not an assertion: the queued closure has waited past its timeout
    // before the slot frees (both sides read the same monotonic clock).
    let queued_at = std::time::Instant::now();
    while queued_at.elapsed() <= timeout * 2 {
        std::thread::sleep(timeout);
    }
    release.send(()).unwrap();
    pool.shutdown();
    // The shed closure is dropped just after the pool counted it, outside the pool's
    // lock, so `shutdown` may return first: wait for the drop itself.
    assert!(ran.recv().is_err(), "a shed closure never runs");
    let s = pool.snapshot();
    assert_eq!((s.accepted, s.completed, s.shed), (2, 1, 1), "{s:?}");
    assert_identities(&s);
}

#[test]
fn spawn_timeout_hands_the_closure_back_when_no_room_comes() {
    let pool = pool(1, 0);
    let release = blocker(&pool);
    let flag = Arc::new(AtomicBool::new(false));
    let mine = flag.clone();
    match pool.spawn_timeout(
        move || mine.store(true, Ordering::SeqCst),
        Duration::from_millis(10),
    ) {
        Err(SubmitError::Timeout(f)) => {
            assert!(!flag.load(Ordering::SeqCst));
            f();
            assert!(flag.load(Ordering::SeqCst));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    release.send(()).unwrap();
    pool.shutdown();
    let s = pool.snapshot();
    assert_eq!((s.submitted, s.accepted, s.rejected), (2, 1, 1), "{s:?}");
    assert_identities(&s);
}

#[test]
fn spawn_timeout_gets_the_slot_when_it_frees() {
    let pool = pool(1, 0);
    let release = blocker(&pool);
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            // A hang guard: reached only if the wakeup is lost.
            pool.spawn_timeout(move || tx.send("in").unwrap(), Duration::from_secs(120))
                .map_err(|e| e.to_string())
        })
    };
    release.send(()).unwrap();
    waiter.join().unwrap().unwrap();
    assert_eq!(rx.recv().unwrap(), "in");
    pool.shutdown();
    let s = pool.snapshot();
    assert_eq!((s.submitted, s.accepted, s.completed), (2, 2, 2), "{s:?}");
    assert_identities(&s);
}

#[test]
fn a_closure_larger_than_the_inline_room_works_the_same() {
    let pool = pool(1, 0);
    let release = blocker(&pool);
    let payload: [u64; 32] = std::array::from_fn(|i| i as u64);
    let (tx, rx) = mpsc::channel();
    let big = move || tx.send(payload.iter().sum::<u64>()).unwrap();
    assert!(std::mem::size_of_val(&big) > 64);
    // Refused: it comes back whole, payload included.
    let big = match pool.try_spawn(big) {
        Err(SubmitError::Full(f)) => f,
        other => panic!("expected Full, got {other:?}"),
    };
    release.send(()).unwrap();
    pool.spawn_timeout(big, Duration::from_secs(120)).unwrap();
    assert_eq!(rx.recv().unwrap(), 496);
    pool.shutdown();
    let s = pool.snapshot();
    assert_eq!((s.accepted, s.completed, s.rejected), (2, 2, 1), "{s:?}");
    assert_identities(&s);
}

/// Four threads spawn 2,000 closures each into a small pool, one in seven panicking,
/// checking the identities in snapshots as they go; every accepted closure runs
/// exactly once and every refused one comes back.
#[test]
fn accounting_identities_hold_under_concurrent_spawns() {
    const THREADS: u64 = 4;
    const EACH: u64 = 2_000;
    let _quiet = quiet();
    let hooked = Arc::new(AtomicU64::new(0));
    let pool = {
        let hooked = hooked.clone();
        BlockingPool::builder()
            .limit(Limit::fixed(2))
            .queue_capacity(16)
            .on_panic(move |_| {
                hooked.fetch_add(1, Ordering::SeqCst);
            })
            .build()
            .unwrap()
    };
    let ran = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(THREADS as usize + 1));
    let spawners: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, ran, start) = (pool.clone(), ran.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let (mut accepted, mut returned) = (0u64, 0u64);
                for i in 0..EACH {
                    let ran = ran.clone();
                    let job = move || {
                        ran.fetch_add(1, Ordering::SeqCst);
                        if (t * EACH + i) % 7 == 0 {
                            panic!("one in seven");
                        }
                    };
                    let result = if i % 2 == 0 {
                        pool.try_spawn(job)
                    } else {
                        pool.spawn_timeout(job, Duration::ZERO)
                    };
                    if i % 100 == 0 {
                        assert_identities(&pool.snapshot());
                    }
                    match result {
                        Ok(()) => accepted += 1,
                        Err(e) => {
                            assert!(e.is_full() || e.is_timeout(), "{e}");
                            returned += 1;
                        }
                    }
                }
                (accepted, returned)
            })
        })
        .collect();
    start.wait();
    // Best effort: how many of these overlap the spawners depends on the scheduler (the
    // spawners' own snapshots below always do).
    while spawners.iter().any(|s| !s.is_finished()) {
        assert_identities(&pool.snapshot());
        std::thread::yield_now();
    }
    let (accepted, returned) = spawners
        .into_iter()
        .map(|s| s.join().unwrap())
        .fold((0, 0), |(a, r), (sa, sr)| (a + sa, r + sr));
    assert_eq!(accepted + returned, THREADS * EACH);
    let report = pool.shutdown();
    assert!(!report.timed_out);
    let s = pool.snapshot();
    assert_identities(&s);
    assert_eq!(
        (s.submitted, s.accepted, s.rejected),
        (THREADS * EACH, accepted, returned)
    );
    assert_eq!(
        ran.load(Ordering::SeqCst),
        accepted,
        "each ran exactly once"
    );
    assert_eq!(s.completed + s.panicked, accepted, "{s:?}");
    assert_eq!(hooked.load(Ordering::SeqCst), s.panicked);
    assert_eq!(pool.limiter_stats().in_flight, 0);
}
