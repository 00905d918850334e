//! Loom models of the pools' state machine (run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p surgepool --lib --release --target-dir target/loom -- loom`).
//!
//! Under `cfg(loom)`, [`crate::sync`] hands out loom's `Arc`, `Mutex`, `Condvar`, atomics
//! and threads, so the *whole* blocking pool runs inside the model: its worker threads are
//! loom threads and loom explores every interleaving of submitters, workers and
//! `close`/`shutdown` (up to the preemption bound). A lost wakeup shows up as a loom
//! deadlock (every thread blocked), a lost task as a failed assertion.
//!
//! The async [`Pool`](crate::Pool) runs on tokio, which is not loom-aware, so it cannot run
//! here. It keeps the same rules as the blocking pool (one lock for every transition; a
//! finishing worker hands itself the next queued task under that lock; admission, close
//! and the drain check under that lock), and its races are covered by the multi-threaded
//! tests (`tests/stress_accounting.rs`, `tests/pool_shutdown.rs`,
//! `tests/pool_submit_wait.rs`). Its shared accounting protocol (count the end under the
//! lock, publish it after, the closing flag in `Published`) has its own loom model in
//! `accounting/loom.rs`.
//!
//! Limits of these models: loom's `Condvar::wait_timeout` never times out, so the models
//! use waits far longer than any run (idle retirement and `submit_timeout`'s expiry are
//! tested with real threads in `tests/blocking_*.rs`), and every model ends with `close` or
//! `shutdown` so that idle workers exit. Models stay small (2–3 threads counting the
//! workers, 1–3 tasks) so that they finish in seconds.

use std::time::Duration;

use crate::sync::{thread, Arc, AtomicUsize, Ordering};
use crate::{BlockingHandle, BlockingPool, Limit, Snapshot, SubmitError};

/// Longer than any model runs: loom never times out anyway, and real time must not
/// either (a real timeout would make the model's execution depend on the clock).
const NEVER: Duration = Duration::from_secs(3600);

fn pool(limit: usize, queue: usize) -> BlockingPool {
    BlockingPool::builder()
        .limit(Limit::fixed(limit))
        .queue_capacity(queue)
        .idle_timeout(NEVER)
        .build()
        .expect("valid settings")
}

fn assert_identities(s: &Snapshot) {
    assert_eq!(s.submitted, s.accepted + s.rejected, "{s:?}");
    assert_eq!(
        s.accepted,
        s.completed + s.panicked + s.cancelled + s.shed + s.queued + s.running,
        "{s:?}"
    );
}

/// What became of one offer: accepted (and then it must run) or handed back.
enum Offer<T> {
    Accepted(BlockingHandle<T>),
    Returned,
}

fn offer<F: FnOnce() -> u32 + Send + 'static>(
    result: Result<BlockingHandle<u32>, SubmitError<F>>,
    want: u32,
) -> Offer<u32> {
    match result {
        Ok(handle) => Offer::Accepted(handle),
        Err(e) => {
            assert!(e.is_closed() || e.is_full(), "{e}");
            // The closure came back whole: it still computes its value.
            assert_eq!(e.into_inner()(), want);
            Offer::Returned
        }
    }
}

/// Settles every offer: an accepted closure ran and its handle has its value.
fn settle(offers: Vec<(Offer<u32>, u32)>) -> u64 {
    let mut accepted = 0;
    for (offer, want) in offers {
        if let Offer::Accepted(handle) = offer {
            assert_eq!(handle.join().expect("an accepted closure runs"), want);
            accepted += 1;
        }
    }
    accepted
}

fn after_shutdown(pool: &BlockingPool, accepted: u64, offers: u64) {
    let report = pool.shutdown();
    assert!(!report.timed_out);
    let s = pool.snapshot();
    assert_eq!(s.submitted, offers);
    assert_eq!((s.accepted, s.completed), (accepted, accepted), "{s:?}");
    assert_eq!((s.queued, s.running, s.workers), (0, 0, 0), "{s:?}");
    assert_eq!(pool.limiter_stats().in_flight, 0);
    assert_identities(&s);
}

/// `try_submit` on one thread races `close` on another: the closure is either accepted
/// and run (even though the pool closed meanwhile) or handed back, never lost.
#[test]
fn loom_try_submit_racing_close() {
    loom::model(|| {
        let pool = pool(1, 1);
        let submitter = {
            let pool = pool.clone();
            thread::spawn(move || offer(pool.try_submit(|| 7), 7))
        };
        pool.close();
        let offered = submitter.join().expect("no panic");
        let accepted = settle(vec![(offered, 7)]);
        after_shutdown(&pool, accepted, 1);
    });
}

/// A caller blocked in `submit_timeout` (the slot is taken) races `close` and the slot's
/// release: it is admitted and its closure runs, or it gets its closure back; never
/// stranded (a lost wakeup is a loom deadlock).
#[test]
fn loom_waiting_submit_racing_close() {
    loom::model(|| {
        let pool = pool(1, 0);
        let first = offer(pool.try_submit(|| 1), 1);
        let waiter = {
            let pool = pool.clone();
            thread::spawn(move || offer(pool.submit_timeout(|| 2, NEVER), 2))
        };
        pool.close();
        let second = waiter.join().expect("no panic");
        let accepted = settle(vec![(first, 1), (second, 2)]);
        assert!(accepted >= 1);
        after_shutdown(&pool, accepted, 2);
    });
}

/// A worker finishes its closure and goes idle while a new closure arrives: whichever
/// order, the new closure runs: handed to the idle worker, or queued and taken by the
/// finishing worker (queue of 1), or its submitter waits and is woken by the finish
/// (queue of 0).
#[test]
fn loom_worker_going_idle_while_work_arrives() {
    for queue in [0, 1] {
        worker_going_idle_while_work_arrives(queue);
    }
}

fn worker_going_idle_while_work_arrives(queue: usize) {
    loom::model(move || {
        let pool = pool(1, queue);
        let first = offer(pool.try_submit(|| 1), 1);
        let submitter = {
            let pool = pool.clone();
            thread::spawn(move || offer(pool.submit_timeout(|| 2, NEVER), 2))
        };
        let second = submitter.join().expect("no panic");
        assert!(
            matches!(second, Offer::Accepted(_)),
            "room came, and it never closed"
        );
        let accepted = settle(vec![(first, 1), (second, 2)]);
        assert_eq!(accepted, 2);
        after_shutdown(&pool, 2, 2);
    });
}

/// The same with the idle worker parked first: a minimum worker waits with nothing to do
/// when the closure is handed to it.
#[test]
fn loom_an_idle_minimum_worker_gets_new_work() {
    loom::model(|| {
        let pool = BlockingPool::builder()
            .limit(Limit::fixed(1))
            .min_workers(1)
            .idle_timeout(NEVER)
            .build()
            .expect("valid settings");
        let h = offer(pool.try_submit(|| 3), 3);
        assert_eq!(settle(vec![(h, 3)]), 1);
        after_shutdown(&pool, 1, 1);
    });
}

/// Slot accounting: two submitters, three closures, a limit of one. No more than the
/// limit ever run at once, every slot comes back, and each closure runs exactly once.
#[test]
fn loom_slots_are_never_exceeded_and_all_return() {
    loom::model(|| {
        let pool = pool(1, 1);
        let now = Arc::new(AtomicUsize::new(0));
        let ran = Arc::new(AtomicUsize::new(0));
        let job = |value: u32| {
            let (now, ran) = (now.clone(), ran.clone());
            move || {
                let inside = now.fetch_add(1, Ordering::SeqCst) + 1;
                assert!(
                    inside <= 1,
                    "{inside} closures ran at once under a limit of 1"
                );
                now.fetch_sub(1, Ordering::SeqCst);
                ran.fetch_add(1, Ordering::SeqCst);
                value
            }
        };
        // Refused closures are dropped here, not run: only the pool runs closures.
        let keep = |r: Result<BlockingHandle<u32>, SubmitError<_>>| match r {
            Ok(handle) => Offer::Accepted(handle),
            Err(e) => {
                assert!(e.is_full(), "{e}");
                Offer::Returned
            }
        };
        let other = {
            let (pool, job) = (pool.clone(), job(2));
            thread::spawn(move || match pool.try_submit(job) {
                Ok(handle) => Offer::Accepted(handle),
                Err(e) => {
                    assert!(e.is_full(), "{e}");
                    Offer::Returned
                }
            })
        };
        let a = keep(pool.try_submit(job(1)));
        let b = keep(pool.try_submit(job(3)));
        let c = other.join().expect("no panic");
        let accepted = settle(vec![(a, 1), (b, 3), (c, 2)]);
        // One slot and one queue place: at least two fit.
        assert!(accepted >= 2);
        assert_eq!(
            ran.load(Ordering::SeqCst) as u64,
            accepted,
            "each ran exactly once"
        );
        after_shutdown(&pool, accepted, 3);
    });
}

/// Two slots, two workers, two submitters racing for them with no queue: at most two
/// closures inside at once, and every slot comes back (the limiter ends at zero).
#[test]
fn loom_two_slots_two_workers() {
    loom::model(|| {
        let pool = pool(2, 0);
        let now = Arc::new(AtomicUsize::new(0));
        let job = |value: u32| {
            let now = now.clone();
            move || {
                let inside = now.fetch_add(1, Ordering::SeqCst) + 1;
                assert!(
                    inside <= 2,
                    "{inside} closures ran at once under a limit of 2"
                );
                now.fetch_sub(1, Ordering::SeqCst);
                value
            }
        };
        let other = {
            let (pool, job) = (pool.clone(), job(2));
            thread::spawn(move || match pool.try_submit(job) {
                Ok(handle) => Offer::Accepted(handle),
                Err(e) => {
                    assert!(e.is_full(), "{e}");
                    Offer::Returned
                }
            })
        };
        let a = match pool.try_submit(job(1)) {
            Ok(handle) => Offer::Accepted(handle),
            Err(e) => {
                assert!(e.is_full(), "{e}");
                Offer::Returned
            }
        };
        let b = other.join().expect("no panic");
        // Two slots for two offers: both fit, whatever the order.
        let accepted = settle(vec![(a, 1), (b, 2)]);
        assert_eq!(accepted, 2);
        after_shutdown(&pool, 2, 2);
    });
}

/// `try_spawn` (a detached closure) on one thread races `close` on another, as
/// `loom_try_submit_racing_close` does for a closure with a handle: accepted and run
/// before the drain ends, or handed back unrun; never lost, never run twice.
///
/// The detached path changes no synchronisation: it goes through the same admission
/// (one lock, same hand-off to a worker or the queue) and the same `finish`; only the job
/// it stores differs (the closure inline, no outcome slot, nothing to publish). This
/// model checks that it is counted and drained by the same state machine.
#[test]
fn loom_try_spawn_racing_close() {
    loom::model(|| {
        let pool = pool(1, 1);
        let ran = Arc::new(AtomicUsize::new(0));
        let submitter = {
            let (pool, ran) = (pool.clone(), ran.clone());
            thread::spawn(move || {
                let job = move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                };
                match pool.try_spawn(job) {
                    Ok(()) => true,
                    Err(e) => {
                        assert!(e.is_closed(), "{e}");
                        false
                    }
                }
            })
        };
        pool.close();
        let accepted = submitter.join().expect("no panic");
        let report = pool.shutdown();
        assert!(!report.timed_out);
        // The drain waited for it: it ran exactly once if accepted, never if not.
        assert_eq!(ran.load(Ordering::SeqCst), usize::from(accepted));
        let s = pool.snapshot();
        assert_eq!(s.submitted, 1);
        assert_eq!(s.accepted, u64::from(accepted), "{s:?}");
        assert_eq!(s.completed, u64::from(accepted), "{s:?}");
        assert_eq!((s.queued, s.running, s.workers), (0, 0, 0), "{s:?}");
        assert_eq!(pool.limiter_stats().in_flight, 0);
        assert_identities(&s);
    });
}
