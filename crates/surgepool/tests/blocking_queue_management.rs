//! Queue management on threads: `queue_timeout`, a closure's own deadline, and CoDel. The
//! blocking pool runs on real time, so every test forces the needed wait with a lower
//! bound (a sleep lasts *at least* its duration) or a deadline already in the past: the
//! outcome never depends on the machine's speed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use surgepool::{BlockingPool, Limit};
use tokio::time::Instant;

mod support;
use support::assert_identities;

#[test]
fn queue_timeout_sheds_a_closure_that_waited_longer() {
    let timeout = Duration::from_millis(5);
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .queue_timeout(timeout)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let busy = pool
        .try_submit(move || {
            rx.recv().unwrap();
            // Hold the slot at least twice the timeout after the next one queued.
            std::thread::sleep(timeout * 2);
        })
        .unwrap();
    let called = Arc::new(AtomicBool::new(false));
    let c = called.clone();
    let late = pool
        .try_submit(move || c.store(true, Ordering::SeqCst))
        .unwrap();
    tx.send(()).unwrap();
    busy.join().unwrap();
    let e = late.join().unwrap_err();
    assert!(e.is_shed());
    assert!(e.to_string().contains("queue timeout"), "{e}");
    assert!(!called.load(Ordering::SeqCst));
    let s = pool.snapshot();
    assert_eq!((s.completed, s.shed), (1, 1));
    assert_identities(&s);
}

#[test]
fn a_closure_whose_deadline_passed_in_the_queue_is_shed() {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let busy = pool.try_submit(move || rx.recv().unwrap()).unwrap();
    let past = Instant::now();
    let expired = pool.try_submit_with_deadline(|| 1, past).unwrap();
    let far = Instant::now() + Duration::from_secs(3600);
    let fine = pool.try_submit_with_deadline(|| 2, far).unwrap();
    tx.send(()).unwrap();
    busy.join().unwrap();
    assert!(expired.join().unwrap_err().is_shed());
    assert_eq!(fine.join().unwrap(), 2);
    // A deadline only applies in the queue: with a free slot it runs at once.
    assert_eq!(
        pool.try_submit_with_deadline(|| 3, past)
            .unwrap()
            .join()
            .unwrap(),
        3
    );
    let s = pool.snapshot();
    assert_eq!((s.completed, s.shed), (3, 1));
    assert_identities(&s);
}

/// 25 closures of at least 10 ms on one thread: from the second dequeue on, every queue
/// delay is above the 5 ms target, so CoDel must start shedding once an interval passed.
#[test]
fn codel_sheds_a_standing_queue() {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(1))
        .codel()
        .build()
        .unwrap();
    let handles: Vec<_> = (0..25)
        .map(|_| {
            pool.try_submit(|| std::thread::sleep(Duration::from_millis(10)))
                .unwrap()
        })
        .collect();
    let mut shed = 0;
    for h in handles {
        if let Err(e) = h.join() {
            assert!(e.is_shed());
            shed += 1;
        }
    }
    let s = pool.snapshot();
    assert!(shed > 0, "{s:?}");
    assert_eq!(s.shed, shed);
    assert_eq!(s.completed + s.shed, 25);
    assert_identities(&s);
}
