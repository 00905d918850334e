//! Exact accounting (issue 2, point 7): the two identities of `Snapshot` at every quiescent
//! moment, each outcome counted once, and the latency histograms (queue wait, run time,
//! end to end) checked figure by figure against a schedule that paused time makes exact.

use std::time::Duration;

use surgepool::{LatencySummary, Limit, Pool};
use tokio::sync::oneshot;
use tokio::time::{sleep, Instant};

mod support;
use support::assert_identities;

const MS: Duration = Duration::from_millis(1);

/// Sleeps `d` from its first poll (a bare `sleep(d)` would count from its creation).
async fn nap(d: Duration) {
    sleep(d).await
}

/// The histograms keep 2 significant digits: every figure is within 1% of the truth.
fn assert_near(what: &str, got: Duration, want: Duration) {
    let tolerance = want / 100 + Duration::from_nanos(1);
    let diff = if got > want { got - want } else { want - got };
    assert!(diff <= tolerance, "{what}: got {got:?}, want {want:?}");
}

fn assert_summary(what: &str, s: &LatencySummary, count: u64, ms: [u64; 4]) {
    assert_eq!(s.count, count, "{what}: {s:?}");
    assert_near(&format!("{what}.mean"), s.mean, MS * ms[0] as u32);
    assert_near(&format!("{what}.p50"), s.p50, MS * ms[1] as u32);
    assert_near(&format!("{what}.p99"), s.p99, MS * ms[2] as u32);
    assert_near(&format!("{what}.max"), s.max, MS * ms[3] as u32);
}

#[tokio::test(start_paused = true)]
async fn an_empty_pool_reports_zeros() {
    let pool = Pool::builder().build().unwrap();
    let s = pool.snapshot();
    assert_eq!(s.queue_wait, LatencySummary::default());
    assert_eq!(s.run_time, LatencySummary::default());
    assert_eq!(s.end_to_end, LatencySummary::default());
    assert_eq!((s.submitted, s.workers, s.running, s.queued), (0, 0, 0, 0));
    assert_identities(&s);
}

/// One slot, three 100 ms tasks submitted at t = 0: they wait 0, 100 and 200 ms, run 100 ms
/// each, and end at 100, 200 and 300 ms.
#[tokio::test(start_paused = true)]
async fn latencies_follow_a_known_schedule_exactly() {
    let pool = Pool::builder().limit(Limit::fixed(1)).build().unwrap();
    let t0 = Instant::now();
    let handles: Vec<_> = (0..3)
        .map(|_| pool.try_submit(nap(100 * MS)).unwrap())
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(t0.elapsed(), 300 * MS);
    let s = pool.snapshot();
    assert_summary("queue_wait", &s.queue_wait, 3, [100, 100, 200, 200]);
    assert_summary("run_time", &s.run_time, 3, [100, 100, 100, 100]);
    assert_summary("end_to_end", &s.end_to_end, 3, [200, 200, 300, 300]);
    assert_identities(&s);
}

/// 100 tasks on 10 slots, each running (i % 10 + 1) ms: percentiles over a wider spread.
#[tokio::test(start_paused = true)]
async fn percentiles_over_many_tasks() {
    let pool = Pool::builder().limit(Limit::fixed(100)).build().unwrap();
    let handles: Vec<_> = (1..=100u32)
        .map(|i| pool.try_submit(nap(MS * i)).unwrap())
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let s = pool.snapshot();
    // Nobody queued: every wait is zero, and end to end equals run time.
    assert_eq!(s.queue_wait.count, 100);
    assert!(s.queue_wait.max <= Duration::from_nanos(1), "{s:?}");
    // Run times are 1..=100 ms: mean 50.5, p50 = 50, p99 = 99, max = 100.
    assert_eq!(s.run_time.count, 100);
    assert_near("run mean", s.run_time.mean, Duration::from_micros(50_500));
    assert_near("run p50", s.run_time.p50, 50 * MS);
    assert_near("run p99", s.run_time.p99, 99 * MS);
    assert_near("run max", s.run_time.max, 100 * MS);
    assert_eq!(s.end_to_end, s.run_time);
}

/// Queue wait counts every task that started or was shed; run time and end to end count
/// every task that ran (completed, panicked, or cancelled while running).
#[tokio::test(start_paused = true)]
async fn which_outcomes_are_recorded_where() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let pool = Pool::builder()
        .limit(Limit::fixed(1))
        .queue_timeout(50 * MS)
        .build()
        .unwrap();
    // t = 0..10: a panic after 10 ms.
    let panics = pool
        .try_submit(async {
            sleep(10 * MS).await;
            panic!("late")
        })
        .unwrap();
    // Queued behind it, waits 10 ms, runs 20 ms.
    let ok = pool.try_submit(nap(20 * MS)).unwrap();
    // Queued, aborted while queued: never recorded.
    let aborted = pool.try_submit(async {}).unwrap();
    aborted.abort();
    // Queued, waits 30 ms, then runs until aborted at 40 ms... see below.
    let (started_tx, started_rx) = oneshot::channel();
    let cancelled_running = pool
        .try_submit(async move {
            started_tx.send(()).unwrap();
            std::future::pending::<()>().await
        })
        .unwrap();
    assert!(panics.await.unwrap_err().is_panic());
    ok.await.unwrap();
    started_rx.await.unwrap();
    // A task that will wait 60 ms in the queue: shed by the 50 ms queue timeout.
    let shed = pool.try_submit(async {}).unwrap();
    sleep(60 * MS).await;
    cancelled_running.abort();
    assert!(cancelled_running.await.unwrap_err().is_cancelled());
    assert!(shed.await.unwrap_err().is_shed());
    std::panic::set_hook(prev);

    let s = pool.snapshot();
    assert_eq!(
        (s.completed, s.panicked, s.cancelled, s.shed),
        (1, 1, 2, 1),
        "{s:?}"
    );
    // Waits: 0 (panic), 10 (ok), 30 (cancelled while running), 60 (shed).
    assert_summary("queue_wait", &s.queue_wait, 4, [25, 10, 60, 60]);
    // Runs: 10 (panic), 20 (ok), 60 (cancelled while running).
    assert_summary("run_time", &s.run_time, 3, [30, 20, 60, 60]);
    // End to end: 10, 30, 90.
    assert_summary("end_to_end", &s.end_to_end, 3, [43, 30, 90, 90]);
    assert_identities(&s);
}

/// Every counter at every step of a script that reaches each outcome and each refusal.
#[tokio::test(start_paused = true)]
async fn every_outcome_and_refusal_is_counted_once() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let pool = Pool::builder()
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
    check([0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let (tx, rx) = oneshot::channel::<()>();
    let running = pool
        .try_submit(async move {
            let _ = rx.await;
        })
        .unwrap();
    check([1, 0, 0, 0, 0, 0, 0, 1, 1]);
    let deadline = Instant::now() + 5 * MS;
    let expires = pool.try_submit_with_deadline(async {}, deadline).unwrap();
    let panics = pool.try_submit(async { panic!("x") }).unwrap();
    check([3, 0, 0, 0, 0, 0, 2, 1, 3]);
    assert!(pool.try_submit(async {}).unwrap_err().is_full());
    check([4, 1, 0, 0, 0, 0, 2, 1, 3]);
    assert!(pool
        .submit_timeout(async {}, 3 * MS)
        .await
        .unwrap_err()
        .is_timeout());
    check([5, 2, 0, 0, 0, 0, 2, 1, 3]);
    sleep(10 * MS).await;
    tx.send(()).unwrap();
    running.await.unwrap();
    assert!(expires.await.unwrap_err().is_shed());
    assert!(panics.await.unwrap_err().is_panic());
    check([5, 2, 1, 1, 0, 1, 0, 0, 3]);
    let forever = pool.try_submit(std::future::pending::<()>()).unwrap();
    let queued = pool.try_submit(async {}).unwrap();
    queued.abort();
    assert!(queued.await.unwrap_err().is_cancelled());
    check([7, 2, 1, 1, 1, 1, 0, 1, 5]);
    // A detached task is still counted.
    drop(pool.try_submit(async {}).unwrap());
    check([8, 2, 1, 1, 1, 1, 1, 1, 6]);
    pool.close();
    assert!(pool.try_submit(async {}).unwrap_err().is_closed());
    check([9, 3, 1, 1, 1, 1, 1, 1, 6]);
    let report = pool.shutdown_timeout(Duration::from_secs(1)).await;
    assert!(report.timed_out);
    assert_eq!((report.cancelled, report.drained), (2, 0));
    assert!(forever.await.unwrap_err().is_cancelled());
    check([9, 3, 1, 1, 3, 1, 0, 0, 6]);
    std::panic::set_hook(prev);
}

/// `drained` counts what finished after shutdown began, `cancelled` what the deadline
/// cut off; work done before the shutdown is in neither.
#[tokio::test(start_paused = true)]
async fn the_shutdown_report_counts_only_work_after_shutdown_began() {
    let pool = Pool::builder().limit(Limit::fixed(2)).build().unwrap();
    pool.try_submit(async {}).unwrap().await.unwrap();
    for ms in [10, 20, 30] {
        drop(pool.try_submit(nap(MS * ms)).unwrap());
    }
    let report = pool.shutdown().await;
    assert_eq!((report.drained, report.cancelled), (3, 0));
    assert!(!report.timed_out);
    // Idempotent: the same report again.
    assert_eq!(pool.shutdown().await, report);
    assert_eq!(pool.snapshot().completed, 4);
}
