//! Bad input (issue 2, point 9) for the blocking pool: every wrong setting is a
//! `BuildError` that names it, and no public call panics on any argument.

use std::sync::mpsc;
use std::time::Duration;

use surgepool::{BlockingPool, Limit};
use tokio::time::Instant;

#[test]
fn wrong_settings_name_themselves() {
    let cases = [
        (BlockingPool::builder().limit(Limit::fixed(0)), "limit"),
        (
            BlockingPool::builder()
                .limit(Limit::fixed(2))
                .min_workers(3),
            "min_workers",
        ),
        (BlockingPool::builder().thread_name("a\0b"), "thread_name"),
        (
            BlockingPool::builder()
                .limit(Limit::adaptive())
                .min_workers(usize::MAX),
            "min_workers",
        ),
    ];
    for (builder, setting) in cases {
        let err = builder.build().unwrap_err();
        assert_eq!(err.setting(), setting, "{err}");
        assert!(err.to_string().contains(setting), "{err}");
    }
}

#[test]
fn the_default_limit_is_the_available_parallelism() {
    let pool = BlockingPool::builder().build().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(pool.snapshot().limit, cores as u64);
    assert_eq!(pool.limiter_stats().limit, cores);
}

#[test]
fn needs_no_runtime() {
    // This test runs on a plain thread: no tokio runtime anywhere.
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .build()
        .unwrap();
    assert_eq!(pool.try_submit(|| 5).unwrap().join().unwrap(), 5);
    assert!(!pool.shutdown().timed_out);
}

/// Every extreme value at once: the pool builds, runs, waits and shuts down.
#[test]
fn huge_values_do_not_panic() {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(usize::MAX))
        .queue_capacity(usize::MAX)
        .idle_timeout(Duration::MAX)
        .queue_timeout(Duration::MAX)
        .codel()
        .build()
        .unwrap();
    for i in 0..3 {
        // Each closure runs on a thread that then idles with an idle timeout of
        // Duration::MAX, and the next one is handed to it.
        assert_eq!(pool.try_submit(move || i).unwrap().join().unwrap(), i);
    }
    let far = Instant::now() + Duration::from_secs(1 << 40);
    assert_eq!(
        pool.try_submit_with_deadline(|| 4, far)
            .unwrap()
            .join()
            .unwrap(),
        4
    );
    let h = pool.submit_timeout(|| 5, Duration::MAX).unwrap();
    assert_eq!(h.join().unwrap(), 5);
    let report = pool.shutdown_timeout(Duration::MAX);
    assert!(!report.timed_out);
    let s = pool.snapshot();
    assert_eq!(s.completed, 5);
}

#[test]
fn an_impossible_stack_size_cancels_the_task_instead_of_panicking() {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .stack_size(usize::MAX)
        .build()
        .unwrap();
    match pool.try_submit(|| 1) {
        // The OS refused the thread: the closure ends as cancelled, nothing is lost.
        Ok(h) => assert!(h.join().unwrap_err().is_cancelled()),
        Err(e) => panic!("unexpected refusal: {e}"),
    }
    let s = pool.snapshot();
    assert_eq!(
        (s.accepted, s.cancelled, s.running, s.workers),
        (1, 1, 0, 0)
    );
    pool.shutdown();
}

#[test]
fn zero_durations_and_a_zero_queue_do_not_panic() {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(0)
        .idle_timeout(Duration::ZERO)
        .queue_timeout(Duration::ZERO)
        .stack_size(0)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let busy = pool.try_submit(move || rx.recv().unwrap()).unwrap();
    assert!(pool
        .submit_timeout(|| (), Duration::ZERO)
        .unwrap_err()
        .is_timeout());
    tx.send(()).unwrap();
    busy.join().unwrap();
    let report = pool.shutdown_timeout(Duration::ZERO);
    assert!(!report.timed_out, "{report:?}");
}
