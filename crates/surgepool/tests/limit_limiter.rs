//! The `Limiter` API: admission, waiting (cancel-safe), outcomes, shared clones, and a
//! limit that shrinks while permits are held.

use std::time::Duration;

use surgepool::limit::{Limit, Limiter, LimiterStats, Permit};
use tokio_test::{assert_pending, assert_ready, task};

#[test]
fn public_types_are_send_sync_and_limiter_clones_share_state() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Limiter>();
    send_sync::<Permit>();
    send_sync::<Limit>();
    send_sync::<LimiterStats>();

    let a = Limiter::new(Limit::fixed(1)).unwrap();
    let b = a.clone();
    let permit = a.try_acquire().unwrap();
    assert!(
        b.try_acquire().is_none(),
        "the clone sees the same in-flight count"
    );
    assert_eq!(b.in_flight(), 1);
    b.set_limit(2);
    assert_eq!(a.limit(), 2);
    permit.success();
    assert_eq!(b.stats().succeeded, 1);
}

#[test]
fn outcomes_are_counted_and_a_dropped_permit_counts_as_dropped() {
    let limiter = Limiter::new(Limit::fixed(10)).unwrap();
    limiter.try_acquire().unwrap().success();
    limiter
        .try_acquire()
        .unwrap()
        .success_with_latency(Duration::from_millis(3));
    limiter.try_acquire().unwrap().dropped();
    limiter.try_acquire().unwrap().ignore();
    drop(limiter.try_acquire().unwrap()); // an error path
    let stats = limiter.stats();
    assert_eq!(
        (stats.succeeded, stats.dropped, stats.ignored),
        (2, 2, 1),
        "{stats:?}"
    );
    assert_eq!((stats.in_flight, stats.limit), (0, 10));
}

#[test]
fn shrinking_with_permits_held_stops_admission_until_drained() {
    let limiter = Limiter::new(Limit::fixed(3)).unwrap();
    let held: Vec<Permit> = (0..3).map(|_| limiter.try_acquire().unwrap()).collect();
    limiter.set_limit(1);
    assert_eq!(limiter.in_flight(), 3, "nothing is revoked");
    let mut held = held.into_iter();
    held.next().unwrap().success();
    assert!(limiter.try_acquire().is_none(), "2 in flight, limit 1");
    held.next().unwrap().success();
    assert!(limiter.try_acquire().is_none(), "1 in flight, limit 1");
    held.next().unwrap().success();
    let p = limiter.try_acquire().expect("drained below the limit");
    assert!(limiter.try_acquire().is_none());
    p.success();
    limiter.set_limit(0);
    assert_eq!(limiter.limit(), 1, "values below 1 become 1");
}

#[test]
fn bad_limits_are_errors() {
    let err = Limiter::new(Limit::fixed(0)).unwrap_err();
    assert_eq!(err.setting(), "limit");
}

#[tokio::test(start_paused = true)]
async fn acquire_waits_for_a_release() {
    let limiter = Limiter::new(Limit::fixed(1)).unwrap();
    let first = limiter.acquire().await;
    let waiter = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.acquire().await.success() }
    });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    first.success();
    waiter.await.unwrap();
    assert_eq!(limiter.in_flight(), 0);
    assert_eq!(limiter.stats().succeeded, 2);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_acquire_takes_nothing_and_passes_its_wakeup_on() {
    let limiter = Limiter::new(Limit::fixed(1)).unwrap();
    let held = limiter.try_acquire().unwrap();

    // Cancelled while waiting: takes nothing.
    let mut cancelled = task::spawn(limiter.acquire());
    assert_pending!(cancelled.poll());
    drop(cancelled);
    assert_eq!(limiter.in_flight(), 1);

    // Cancelled after being woken for a freed slot: the wake-up goes to the next waiter.
    let mut first = task::spawn(limiter.acquire());
    let mut second = task::spawn(limiter.acquire());
    assert_pending!(first.poll());
    assert_pending!(second.poll());
    held.success();
    assert!(first.is_woken());
    drop(first);
    assert!(second.is_woken(), "the wake-up was passed on");
    let permit = assert_ready!(second.poll());
    assert_eq!(limiter.in_flight(), 1);
    permit.success();
    assert_eq!(limiter.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn acquire_timeout_gives_up_in_time_and_succeeds_when_room_comes() {
    let limiter = Limiter::new(Limit::fixed(1)).unwrap();
    let held = limiter.try_acquire().unwrap();
    let start = tokio::time::Instant::now();
    assert!(limiter
        .acquire_timeout(Duration::from_millis(50))
        .await
        .is_none());
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    assert_eq!(limiter.in_flight(), 1);

    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        held.success();
    });
    let permit = limiter
        .acquire_timeout(Duration::from_millis(50))
        .await
        .expect("released after 10 ms");
    releaser.await.unwrap();
    permit.ignore();
    assert_eq!(limiter.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn raising_the_limit_wakes_as_many_waiters() {
    let limiter = Limiter::new(Limit::fixed(1)).unwrap();
    let held = limiter.try_acquire().unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.acquire().await })
        })
        .collect();
    tokio::task::yield_now().await;
    limiter.set_limit(4);
    let mut permits = Vec::new();
    for w in waiters {
        permits.push(w.await.unwrap());
    }
    assert_eq!(limiter.in_flight(), 4);
    drop(permits);
    held.success();
    assert_eq!(limiter.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn samples_move_an_adaptive_limit() {
    // AIMD: +1 per success while at least half the limit is in use.
    let limiter = Limiter::new(Limit::aimd_builder().min(1).initial(2).build().unwrap()).unwrap();
    let a = limiter.try_acquire().unwrap();
    let b = limiter.try_acquire().unwrap();
    a.success_with_latency(Duration::from_millis(5));
    assert_eq!(limiter.limit(), 3);
    b.dropped();
    assert_eq!(limiter.limit(), 2, "3 x 0.9");
}
