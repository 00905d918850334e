//! `Limiter::acquire` serves waiters first come, first served: no `try_acquire` barges past
//! a waiter, a slot freed while someone waits goes to the oldest waiter, and a waiter
//! cancelled after it was handed a slot passes the slot on. Deterministic: futures are
//! polled by hand (tokio-test), no timing involved.

use std::time::Duration;

use surgepool::limit::{Limit, Limiter, Permit};
use tokio_test::{assert_pending, assert_ready, task};

#[test]
fn waiters_are_served_in_the_order_they_parked() {
    let limiter = Limiter::new(Limit::fixed(1)).unwrap();
    let mut held = limiter.try_acquire().unwrap();
    let mut waiters: Vec<_> = (0..3).map(|_| task::spawn(limiter.acquire())).collect();
    for w in &mut waiters {
        assert_pending!(w.poll());
    }
    assert_eq!(limiter.stats().waiters, 3);
    let mut served = Vec::new();
    for _ in 0..3 {
        held.success();
        // Poll every waiter, last first, as an executor might: only the oldest is ready.
        let mut next = None;
        for (i, w) in waiters.iter_mut().enumerate().rev() {
            if served.contains(&i) {
                continue;
            }
            if let std::task::Poll::Ready(permit) = w.poll() {
                assert!(next.is_none(), "two waiters served by one release");
                next = Some((i, permit));
            }
        }
        let (i, permit) = next.expect("a release serves a waiter");
        served.push(i);
        held = permit;
    }
    assert_eq!(served, [0, 1, 2], "FIFO");
    held.success();
    assert_eq!(limiter.in_flight(), 0);
    assert_eq!(limiter.stats().waiters, 0);
}

#[test]
fn try_acquire_does_not_barge_past_a_waiter() {
    let limiter = Limiter::new(Limit::fixed(1)).unwrap();
    let held = limiter.try_acquire().unwrap();
    let mut waiter = task::spawn(limiter.acquire());
    assert_pending!(waiter.poll());
    held.success();
    // The slot went to the waiter even though it has not run yet.
    assert!(waiter.is_woken());
    assert!(
        limiter.try_acquire().is_none(),
        "a freed slot belongs to the waiter"
    );
    assert_eq!(limiter.in_flight(), 1);
    let permit = assert_ready!(waiter.poll());
    permit.success();
    assert_eq!(limiter.in_flight(), 0);
    assert!(
        limiter.try_acquire().is_some(),
        "no waiter: admission again"
    );
}

#[test]
fn while_anyone_waits_a_newcomer_queues_behind_even_under_the_limit() {
    let limiter = Limiter::new(Limit::fixed(2)).unwrap();
    let a = limiter.try_acquire().unwrap();
    let b = limiter.try_acquire().unwrap();
    let mut first = task::spawn(limiter.acquire());
    assert_pending!(first.poll());
    limiter.set_limit(3); // room for one: the waiter gets it, not a newcomer
    assert!(first.is_woken());
    assert!(limiter.try_acquire().is_none());
    let mut newcomer = task::spawn(limiter.acquire());
    assert_pending!(newcomer.poll());
    let first = assert_ready!(first.poll());
    drop((a, b, first));
    let late = assert_ready!(newcomer.poll());
    late.ignore();
    assert_eq!(limiter.in_flight(), 0);
}

#[test]
fn a_waiter_cancelled_after_the_hand_off_passes_the_slot_on() {
    let limiter = Limiter::new(Limit::fixed(1)).unwrap();
    let held = limiter.try_acquire().unwrap();
    let mut first = task::spawn(limiter.acquire());
    let mut second = task::spawn(limiter.acquire());
    assert_pending!(first.poll());
    assert_pending!(second.poll());
    held.success(); // handed to `first`
    assert!(first.is_woken() && !second.is_woken());
    drop(first); // cancelled before it ran: the slot goes on to `second`
    assert!(second.is_woken());
    assert_eq!(limiter.in_flight(), 1);
    let permit = assert_ready!(second.poll());
    permit.success();
    assert_eq!(limiter.in_flight(), 0);

    // With nobody behind it, the slot is freed.
    let held = limiter.try_acquire().unwrap();
    let mut only = task::spawn(limiter.acquire());
    assert_pending!(only.poll());
    held.success();
    drop(only);
    assert_eq!(limiter.in_flight(), 0);
    assert_eq!(limiter.stats().waiters, 0);
    assert!(limiter.try_acquire().is_some());
}

#[test]
fn a_hand_off_respects_a_limit_that_shrank() {
    let limiter = Limiter::new(Limit::fixed(2)).unwrap();
    let a = limiter.try_acquire().unwrap();
    let b = limiter.try_acquire().unwrap();
    let mut waiter = task::spawn(limiter.acquire());
    assert_pending!(waiter.poll());
    limiter.set_limit(1);
    a.success(); // 2 held, limit 1: this slot is freed, not handed on
    assert!(!waiter.is_woken());
    assert_eq!(limiter.in_flight(), 1);
    b.success(); // 1 held, limit 1: handed on
    let permit = assert_ready!(waiter.poll());
    assert_eq!(limiter.in_flight(), 1);
    permit.success();
    assert_eq!(limiter.in_flight(), 0);
}

/// The review's starvation case, scaled down: a few tasks loop on `try_acquire` while many
/// wait in `acquire`. Every waiter is served, in order, before any looping task gets in again.
#[tokio::test(start_paused = true)]
async fn greedy_try_acquire_loops_cannot_starve_waiters() {
    let limiter = Limiter::new(Limit::fixed(3)).unwrap();
    let mut greedy: Vec<Permit> = (0..3).map(|_| limiter.try_acquire().unwrap()).collect();
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let waiters: Vec<_> = (0..16)
        .map(|i| {
            let (limiter, order) = (limiter.clone(), order.clone());
            tokio::spawn(async move {
                let permit = limiter.acquire().await;
                order.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(1)).await;
                permit.success();
            })
        })
        .collect();
    // Let them all park, in spawn order.
    tokio::task::yield_now().await;
    assert_eq!(limiter.stats().waiters, 16);
    let mut greedy_wins = 0;
    // The greedy tasks release and immediately try again, as in the review's program.
    for _ in 0..200 {
        if let Some(p) = greedy.pop() {
            p.success();
        }
        if let Some(p) = limiter.try_acquire() {
            greedy_wins += 1;
            greedy.push(p);
        }
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
    for w in waiters {
        // Bounded, so that a starved waiter fails the test instead of hanging it.
        tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("a waiter starved")
            .unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..16).collect::<Vec<_>>());
    assert!(
        greedy_wins > 0,
        "once nobody waits, try_acquire admits again"
    );
    drop(greedy);
    assert_eq!(limiter.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn acquire_timeout_of_duration_max_waits_without_a_deadline() {
    let limiter = Limiter::new(Limit::fixed(1)).unwrap();
    let held = limiter.try_acquire().unwrap();
    let waiter = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.acquire_timeout(Duration::MAX).await.is_some() }
    });
    tokio::time::sleep(Duration::from_secs(3600)).await;
    held.success();
    assert!(waiter.await.unwrap());
    assert_eq!(limiter.in_flight(), 0);
}
