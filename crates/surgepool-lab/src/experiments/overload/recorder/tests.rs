//! Tests of the recorder: every outcome counted once, the SLO and the halves, the slowdown.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{Counts, Recorder, Tracked};
use crate::experiments::overload::change;
use crate::work::{Work, WorkKind};

fn work() -> Work {
    Work {
        kind: WorkKind::Sleep,
        service: Duration::from_millis(5),
        alloc_bytes: 4096,
    }
}

#[tokio::test(start_paused = true)]
async fn every_outcome_is_counted_once() {
    let r = Recorder::new(Duration::from_secs(1));
    let now = Instant::now();
    // completed
    r.accepted();
    Tracked::new(r.clone(), now, work()).await;
    // shed: dropped before running
    r.accepted();
    drop(Tracked::new(r.clone(), now, work()));
    // cancelled: dropped after it started
    r.accepted();
    let mut started = Box::pin(Tracked::new(r.clone(), now, work()));
    assert!(futures_poll_once(started.as_mut()).is_pending());
    drop(started);
    // refused: counts nothing but the rejection
    Tracked::new(r.clone(), now, work()).disarm();
    r.rejected(now);
    // draining: an unrun drop is a cancellation
    r.accepted();
    r.start_draining();
    drop(Tracked::new(r.clone(), now, work()));

    let c = r.counts();
    assert_eq!(
        c,
        Counts {
            accepted: 4,
            rejected: 1,
            completed: 1,
            failed: 0,
            shed: 1,
            cancelled: 2,
            within_slo: 1,
        }
    );
    assert_eq!(c.in_flight(), 0);
    assert!(r.take_interval().p50_ms > 0.0);
    assert_eq!(r.take_interval().p50_ms, 0.0);
}

#[tokio::test(start_paused = true)]
async fn slo_and_halves_count_by_intended_arrival() {
    // Latencies are read on the real clock: one request due 100 s ago (far past a 50 s
    // SLO), the others due now or later (microseconds: well within it).
    let r = Recorder::new(Duration::from_secs(50));
    let now = Instant::now();
    let long_ago = now.checked_sub(Duration::from_secs(100)).unwrap();
    let later = now + Duration::from_secs(1);
    r.split_halves(long_ago, now);
    for intended in [long_ago, now, later] {
        r.arrived(intended);
        r.accepted();
        Tracked::new(r.clone(), intended, work()).await;
    }
    let c = r.counts();
    assert_eq!((c.completed, c.within_slo), (3, 2));
    let halves = r.phases(Duration::from_secs(10));
    let figures: Vec<_> = halves
        .iter()
        .map(|p| (p.name.as_str(), p.offered, p.completed, p.within_slo))
        .collect();
    assert_eq!(figures, [("first", 1, 1, 0), ("second", 2, 2, 2)]);
    assert_eq!((halves[1].from_s, halves[1].to_s), (5.0, 10.0));
    assert_eq!(halves[1].slo_goodput_rps, 2.0 / 5.0);
    assert!(halves[0].latency_ms.p50 >= 99_000.0);
}

#[tokio::test(start_paused = true)]
async fn work_that_starts_after_a_slowdown_takes_three_times_as_long() {
    let r = Recorder::new(Duration::from_secs(1));
    let started = tokio::time::Instant::now();
    r.accepted();
    Tracked::new(r.clone(), Instant::now(), work()).await;
    assert_eq!(started.elapsed(), Duration::from_millis(5));
    // The slowdown begins now: work started from now on takes 3 x 5 ms.
    r.slow_down_from(Instant::now());
    let started = tokio::time::Instant::now();
    r.accepted();
    Tracked::new(r.clone(), Instant::now(), work()).await;
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(5) * change::SLOWDOWN_FACTOR
    );
}

#[tokio::test(start_paused = true)]
async fn slowed_work_is_judged_against_the_slowed_slo() {
    // SLO 40 s; one request due 100 s ago runs at the base service time (missed), one
    // due 100 s ago runs slowed (SLO 120 s: within).
    let r = Recorder::new(Duration::from_secs(40));
    let long_ago = Instant::now()
        .checked_sub(Duration::from_secs(100))
        .unwrap();
    r.accepted();
    Tracked::new(r.clone(), long_ago, work()).await;
    assert_eq!(r.counts().within_slo, 0);
    r.slow_down_from(Instant::now());
    r.accepted();
    Tracked::new(r.clone(), long_ago, work()).await;
    assert_eq!(r.counts().within_slo, 1);
}

fn futures_poll_once(f: Pin<&mut Tracked>) -> Poll<()> {
    let waker = crate::experiments::overload::noop_waker();
    f.poll(&mut Context::from_waker(&waker))
}
