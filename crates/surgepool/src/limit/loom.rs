//! Loom models of the limiter's atomic admission path: admission never exceeds the limit,
//! the limit may shrink while permits are held, and every slot comes back.
//!
//! The raw path (`try_acquire_raw` / `release_raw` / `keep_raw` / `free_raw` / `set_limit`)
//! and the FIFO `acquire` (its queue lock and atomics are loom's; the future is driven by
//! `loom::future::block_on` or polled by hand): no lost wake-up, no barging, and a waiter
//! cancelled after the hand-off passes its slot on.

use super::{Limit, Limiter, Outcome};
use crate::sync::{Arc, AtomicUsize, Ordering};
use loom::thread;
use tokio::time::Instant;

/// Takes a slot, checks (with a model-side counter) that no more than `bound` jobs are
/// inside at once, and gives the slot back.
fn job(limiter: &Limiter, inside: &AtomicUsize, bound: usize) -> bool {
    if !limiter.try_acquire_raw() {
        return false;
    }
    let now_inside = inside.fetch_add(1, Ordering::SeqCst) + 1;
    assert!(now_inside <= bound, "{now_inside} inside, bound {bound}");
    inside.fetch_sub(1, Ordering::SeqCst);
    limiter.release_raw(Outcome::Ignored, Instant::now());
    true
}

#[test]
fn loom_admission_never_exceeds_a_fixed_limit() {
    loom::model(|| {
        let limiter = Limiter::new(Limit::fixed(1)).unwrap();
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (limiter, inside) = (limiter.clone(), inside.clone());
                thread::spawn(move || job(&limiter, &inside, 1))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(limiter.in_flight(), 0);
        let stats = limiter.stats();
        assert_eq!(stats.in_flight, 0);
    });
}

#[test]
fn loom_shrinking_with_permits_held_drains_and_loses_nothing() {
    loom::model(|| {
        let limiter = Limiter::new(Limit::fixed(2)).unwrap();
        // Two permits held when the limit shrinks to 1.
        assert!(limiter.try_acquire_raw());
        assert!(limiter.try_acquire_raw());

        let shrink = {
            let limiter = limiter.clone();
            thread::spawn(move || limiter.set_limit(1))
        };
        let release = {
            let limiter = limiter.clone();
            thread::spawn(move || {
                limiter.release_raw(Outcome::Success(std::time::Duration::ZERO), Instant::now());
                // With one permit still held, admission succeeds only if the shrink has
                // not happened yet (then the limit was 2).
                limiter.try_acquire_raw()
            })
        };
        shrink.join().unwrap();
        let admitted = release.join().unwrap();
        assert_eq!(limiter.limit(), 1);
        let held = 1 + usize::from(admitted);
        assert_eq!(limiter.in_flight(), held);
        // Over the new limit now: nothing is admitted until it drains below it.
        assert!(!limiter.try_acquire_raw());
        for _ in 0..held {
            limiter.release_raw(Outcome::Ignored, Instant::now());
        }
        assert_eq!(limiter.in_flight(), 0);
        assert!(limiter.try_acquire_raw(), "drained below the new limit");
        assert!(!limiter.try_acquire_raw(), "but only one fits");
        limiter.release_raw(Outcome::Dropped(std::time::Duration::ZERO), Instant::now());
        let stats = limiter.stats();
        assert_eq!(
            stats.succeeded + stats.dropped + stats.ignored,
            2 + held as u64
        );
    });
}

#[test]
fn loom_concurrent_jobs_respect_a_limit_that_shrinks_under_them() {
    loom::model(|| {
        let limiter = Limiter::new(Limit::fixed(2)).unwrap();
        let inside = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (limiter, inside) = (limiter.clone(), inside.clone());
                // Bound 2: the limit is 2 before the shrink and 1 after; a job admitted
                // before the shrink may still be inside.
                thread::spawn(move || job(&limiter, &inside, 2))
            })
            .collect();
        limiter.set_limit(1);
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(limiter.in_flight(), 0);
        assert!(limiter.try_acquire_raw());
        assert!(!limiter.try_acquire_raw());
        limiter.release_raw(Outcome::Ignored, Instant::now());
    });
}

#[test]
fn loom_an_algorithm_moving_the_limit_races_a_manual_shrink() {
    loom::model(|| {
        // AIMD moves the limit on every sample (under the limiter's mutex) while another
        // thread shrinks it by hand: no panic, no lost slot, the limit stays >= 1.
        let limit = Limit::aimd_builder().min(1).initial(2).build().unwrap();
        let limiter = Limiter::new(limit).unwrap();
        assert!(limiter.try_acquire_raw());
        assert!(limiter.try_acquire_raw());
        let releaser = {
            let limiter = limiter.clone();
            thread::spawn(move || {
                limiter.release_raw(
                    Outcome::Success(std::time::Duration::from_millis(1)),
                    Instant::now(),
                );
                limiter.release_raw(
                    Outcome::Dropped(std::time::Duration::from_millis(1)),
                    Instant::now(),
                );
            })
        };
        limiter.set_limit(1);
        releaser.join().unwrap();
        assert_eq!(limiter.in_flight(), 0);
        assert!(limiter.limit() >= 1);
        assert!(limiter.try_acquire_raw());
        limiter.release_raw(Outcome::Ignored, Instant::now());
        let stats = limiter.stats();
        assert_eq!((stats.succeeded, stats.dropped, stats.ignored), (1, 1, 1));
    });
}

/// A finishing job keeps its slot for the next (as the pools do with a queue behind it) while
/// another caller tries to take one and the limit shrinks: the slot is kept only
/// while within the limit, nobody is admitted past it, and every slot comes back.
#[test]
fn loom_passing_a_slot_on_never_exceeds_the_limit() {
    loom::model(|| {
        let limiter = Limiter::new(Limit::fixed(2)).unwrap();
        let inside = Arc::new(AtomicUsize::new(1));
        assert!(limiter.try_acquire_raw());
        let passer = {
            let (limiter, inside) = (limiter.clone(), inside.clone());
            thread::spawn(move || {
                inside.fetch_sub(1, Ordering::SeqCst);
                let in_flight = limiter.in_flight();
                if limiter.keep_raw() {
                    let now_inside = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    assert!(now_inside <= 2, "{now_inside} inside");
                    inside.fetch_sub(1, Ordering::SeqCst);
                    limiter.free_raw();
                }
                let success = Outcome::Success(std::time::Duration::ZERO);
                limiter.sample_raw(success, Instant::now(), in_flight);
            })
        };
        let other = {
            let (limiter, inside) = (limiter.clone(), inside.clone());
            thread::spawn(move || job(&limiter, &inside, 2))
        };
        let shrink = {
            let limiter = limiter.clone();
            thread::spawn(move || limiter.set_limit(1))
        };
        passer.join().unwrap();
        other.join().unwrap();
        shrink.join().unwrap();
        assert_eq!(limiter.in_flight(), 0, "every slot came back");
        assert_eq!(
            limiter.stats().succeeded,
            1,
            "the passed-on job was counted once"
        );
    });
}

/// A waker that does nothing, for futures polled by hand.
struct NoopWake;

impl std::task::Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}

/// A release races a task parking in `acquire` and a `try_acquire` from a third thread: the
/// waiter is always served (a lost wake-up would deadlock `block_on`, which loom reports),
/// never more than the limit is inside, and every slot comes back.
#[test]
fn loom_a_release_racing_a_parking_waiter_never_loses_the_wake_up() {
    loom::model(|| {
        let limiter = Limiter::new(Limit::fixed(1)).unwrap();
        let inside = Arc::new(AtomicUsize::new(0));
        let held = limiter.try_acquire().unwrap();
        let waiter = {
            let (limiter, inside) = (limiter.clone(), inside.clone());
            thread::spawn(move || {
                let permit = loom::future::block_on(limiter.acquire());
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "over the limit");
                inside.fetch_sub(1, Ordering::SeqCst);
                permit.success();
            })
        };
        let barger = {
            let (limiter, inside) = (limiter.clone(), inside.clone());
            thread::spawn(move || {
                if let Some(permit) = limiter.try_acquire() {
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "over the limit");
                    inside.fetch_sub(1, Ordering::SeqCst);
                    permit.ignore();
                }
            })
        };
        held.success();
        waiter.join().unwrap();
        barger.join().unwrap();
        let stats = limiter.stats();
        assert_eq!((stats.in_flight, stats.waiters), (0, 0));
    });
}

/// A parked waiter is cancelled while a release hands it the slot: whichever wins, the slot
/// ends up with the waiter behind it (served) and then back; nothing is lost or doubled.
#[test]
fn loom_a_waiter_cancelled_during_the_hand_off_passes_the_slot_on() {
    loom::model(|| {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};

        let limiter = Limiter::new(Limit::fixed(1)).unwrap();
        let held = limiter.try_acquire().unwrap();
        let waker = Waker::from(Arc::new(NoopWake));
        let mut cx = Context::from_waker(&waker);
        // Two waiters park, in order.
        let mut first = Box::pin(limiter.acquire());
        assert!(first.as_mut().poll(&mut cx).is_pending());
        let mut second = Box::pin(limiter.acquire());
        assert!(second.as_mut().poll(&mut cx).is_pending());

        let releaser = thread::spawn(move || held.success());
        drop(first); // cancelled, maybe after the hand-off
        releaser.join().unwrap();
        match second.as_mut().poll(&mut cx) {
            Poll::Ready(permit) => {
                assert_eq!(limiter.in_flight(), 1);
                permit.success();
            }
            Poll::Pending => panic!("the slot was lost: {:?}", limiter.stats()),
        }
        let stats = limiter.stats();
        assert_eq!((stats.in_flight, stats.waiters), (0, 0));
    });
}
