//! Exact accounting (issue 2, points 7 and 8) on threads: every counter at every step of
//! a script that reaches each outcome and each refusal, and latency histograms checked
//! against lower bounds (the blocking pool runs on real time: a sleep lasts at least its
//! duration, so these bounds hold on any machine; no upper bound is asserted).

use std::sync::mpsc;
use std::time::Duration;

use surgepool::{BlockingPool, Limit};
use tokio::time::Instant;

mod support;
use support::assert_identities;

/// Within the histogram's 1% precision.
fn at_least(what: &str, got: Duration, floor: Duration) {
    assert!(got >= floor - floor / 100, "{what}: {got:?} < {floor:?}");
}

#[test]
fn latencies_cover_every_task_and_respect_the_schedule() {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .build()
        .unwrap();
    let nap = Duration::from_millis(20);
    let submitting = std::time::Instant::now();
    let handles: Vec<_> = (0..3)
        .map(|_| pool.try_submit(move || std::thread::sleep(nap)).unwrap())
        .collect();
    // The k-th task waits at least k naps *from the first submit*: the later submits' own
    // time comes off its bound (a fraction of a millisecond normally, more under a
    // sanitizer, which is how ThreadSanitizer's slow submits once broke the 1% slack).
    let gap = submitting.elapsed();
    for h in handles {
        h.join().unwrap();
    }
    let s = pool.snapshot();
    assert_eq!(s.queue_wait.count, 3, "{s:?}");
    assert_eq!(s.run_time.count, 3);
    assert_eq!(s.end_to_end.count, 3);
    // Waits are at least 0, 20 and 40 ms; runs at least 20; ends at least 20, 40, 60.
    at_least(
        "queue_wait.max",
        s.queue_wait.max,
        (2 * nap).saturating_sub(gap),
    );
    at_least("queue_wait.p50", s.queue_wait.p50, nap.saturating_sub(gap));
    at_least("run_time.p50", s.run_time.p50, nap);
    at_least("run_time.max", s.run_time.max, nap);
    at_least(
        "end_to_end.max",
        s.end_to_end.max,
        (3 * nap).saturating_sub(gap),
    );
    at_least(
        "end_to_end.mean",
        s.end_to_end.mean,
        (2 * nap).saturating_sub(gap),
    );
    assert!(s.end_to_end.max >= s.run_time.max);
    assert!(s.queue_wait.p50 <= s.queue_wait.p99 && s.queue_wait.p99 <= s.queue_wait.max);
}

#[test]
fn every_outcome_and_refusal_is_counted_once() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(2)
        .build()
        .unwrap();
    let check = |want: [u64; 9]| {
        let s = pool.snapshot();
        let got = [
            s.submitted,
            s.rejected,
            s.completed,
            s.panicked,
            s.cancelled,
            s.shed,
            s.queued,
            s.running,
            s.accepted,
        ];
        assert_eq!(got, want, "[sub rej com pan can shed q run acc] {s:?}");
        assert_identities(&s);
    };
    check([0; 9]);
    let (tx, rx) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    let running = pool
        .try_submit(move || {
            started_tx.send(()).unwrap();
            rx.recv().unwrap()
        })
        .unwrap();
    started.recv().unwrap();
    check([1, 0, 0, 0, 0, 0, 0, 1, 1]);
    let expires = pool
        .try_submit_with_deadline(|| (), Instant::now())
        .unwrap();
    let panics = pool.try_submit(|| -> () { panic!("x") }).unwrap();
    check([3, 0, 0, 0, 0, 0, 2, 1, 3]);
    assert!(pool.try_submit(|| ()).unwrap_err().is_full());
    check([4, 1, 0, 0, 0, 0, 2, 1, 3]);
    assert!(pool
        .submit_timeout(|| (), Duration::from_millis(1))
        .unwrap_err()
        .is_timeout());
    check([5, 2, 0, 0, 0, 0, 2, 1, 3]);
    tx.send(()).unwrap();
    running.join().unwrap();
    assert!(expires.join().unwrap_err().is_shed());
    assert!(panics.join().unwrap_err().is_panic());
    check([5, 2, 1, 1, 0, 1, 0, 0, 3]);
    // Detached closures are still counted.
    let (tx, rx) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    drop(
        pool.try_submit(move || {
            started_tx.send(()).unwrap();
            rx.recv().unwrap()
        })
        .unwrap(),
    );
    started.recv().unwrap();
    drop(pool.try_submit(|| ()).unwrap());
    check([7, 2, 1, 1, 0, 1, 1, 1, 5]);
    pool.close();
    assert!(pool.try_submit(|| ()).unwrap_err().is_closed());
    check([8, 3, 1, 1, 0, 1, 1, 1, 5]);
    let report = pool.shutdown_timeout(Duration::ZERO);
    assert!(report.timed_out);
    assert_eq!(report.cancelled, 1);
    check([8, 3, 1, 1, 1, 1, 0, 1, 5]);
    tx.send(()).unwrap();
    let report = pool.shutdown();
    assert_eq!((report.drained, report.cancelled), (1, 1));
    check([8, 3, 2, 1, 1, 1, 0, 0, 5]);
    std::panic::set_hook(prev);
}
