//! Threads (issue 2, points 4 and 8): they start on demand up to the limit, never fewer
//! than `min_workers`, and idle threads above the minimum exit after `idle_timeout` (not
//! before). Thread exits are observed exactly, through a thread-local whose destructor
//! reports when the OS thread ends: no sleeping and hoping.

use std::cell::RefCell;
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use surgepool::{BlockingPool, Limit};

/// Sends the thread's name and exit instant when the thread ends.
struct ExitSignal(mpsc::Sender<(String, Instant)>);

impl Drop for ExitSignal {
    fn drop(&mut self) {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        let _ = self.0.send((name, Instant::now()));
    }
}

thread_local! {
    static ON_EXIT: RefCell<Option<ExitSignal>> = const { RefCell::new(None) };
}

/// Arms the current thread's exit signal (once per thread).
fn watch_exit(tx: &mpsc::Sender<(String, Instant)>) {
    ON_EXIT.with(|s| {
        let mut s = s.borrow_mut();
        if s.is_none() {
            *s = Some(ExitSignal(tx.clone()));
        }
    });
}

/// Runs `n` closures at once (so on `n` different threads), each arming its thread's exit
/// signal; returns, per thread name, the instant its closure ended (its idle time starts
/// after that).
fn occupy_threads(
    pool: &BlockingPool,
    n: usize,
    exits: &mpsc::Sender<(String, Instant)>,
) -> std::collections::HashMap<String, Instant> {
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (barrier, exits) = (barrier.clone(), exits.clone());
            pool.try_submit(move || {
                watch_exit(&exits);
                barrier.wait();
                let name = std::thread::current().name().unwrap_or("").to_owned();
                (name, Instant::now())
            })
            .unwrap()
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn threads_start_on_demand_and_carry_the_pool_name() {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(3))
        .thread_name("resize")
        .build()
        .unwrap();
    assert_eq!(pool.snapshot().workers, 0);
    let (tx, rx) = mpsc::channel::<()>();
    let rx = Arc::new(std::sync::Mutex::new(rx));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let rx = rx.clone();
            pool.try_submit(move || {
                rx.lock().unwrap().recv().unwrap();
                std::thread::current().name().unwrap().to_owned()
            })
            .unwrap()
        })
        .collect();
    assert_eq!(pool.snapshot().workers, 2);
    tx.send(()).unwrap();
    tx.send(()).unwrap();
    let mut names: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["resize-0", "resize-1"]);
}

#[test]
fn idle_threads_above_the_minimum_exit_after_the_idle_timeout_and_not_before() {
    let idle = Duration::from_millis(30);
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(4))
        .min_workers(1)
        .idle_timeout(idle)
        .build()
        .unwrap();
    assert_eq!(pool.snapshot().workers, 1, "the minimum starts at build");
    let (exit_tx, exits) = mpsc::channel();
    let ended = occupy_threads(&pool, 4, &exit_tx);
    assert_eq!(ended.len(), 4, "four closures at once ran on four threads");
    assert_eq!(pool.snapshot().workers, 4);
    // Exactly three threads exit (those above the minimum), each at least the idle
    // timeout after its last closure ended.
    for _ in 0..3 {
        let (name, at) = exits.recv().unwrap();
        assert!(
            at.duration_since(ended[&name]) >= idle,
            "{name} exited early"
        );
    }
    assert_eq!(pool.snapshot().workers, 1);
    // The minimum thread stays and serves.
    assert_eq!(pool.try_submit(|| 7).unwrap().join().unwrap(), 7);
    assert_eq!(pool.snapshot().workers, 1);
    pool.shutdown();
    assert_eq!(pool.snapshot().workers, 0);
    // Every thread armed above has exited by now or will: the fourth signal comes once
    // the minimum thread ends after the shutdown.
    exits.recv().unwrap();
}

#[test]
fn the_minimum_never_dips_under_churn() {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(4))
        .min_workers(2)
        .queue_capacity(16)
        .idle_timeout(Duration::ZERO)
        .build()
        .unwrap();
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for i in 0..500u32 {
                    if let Ok(h) = pool.try_submit(move || i) {
                        if i % 4 == 0 {
                            h.join().unwrap();
                        }
                    }
                    let s = pool.snapshot();
                    assert!((2..=4).contains(&s.workers), "{s:?}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    pool.shutdown();
    let s = pool.snapshot();
    assert_eq!(s.workers, 0);
}

/// Dropping the last handle does not block, queued work still finishes, and every thread
/// exits afterwards.
#[test]
fn dropping_the_last_pool_neither_blocks_nor_leaks_threads() {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(2))
        .min_workers(2)
        .build()
        .unwrap();
    let (exit_tx, exits) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = Arc::new(std::sync::Mutex::new(go_rx));
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let (exit_tx, go_rx, barrier) = (exit_tx.clone(), go_rx.clone(), barrier.clone());
            pool.try_submit(move || {
                watch_exit(&exit_tx);
                if i < 2 {
                    barrier.wait();
                }
                go_rx.lock().unwrap().recv().unwrap();
                i
            })
            .unwrap()
        })
        .collect();
    drop(exit_tx);
    // Would deadlock if dropping waited: the closures wait for us.
    drop(pool);
    for _ in 0..4 {
        go_tx.send(()).unwrap();
    }
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results, [0, 1, 2, 3]);
    // Both threads end: their exit signals arrive, then the channel closes.
    assert_eq!(exits.iter().count(), 2);
}
