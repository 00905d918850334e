//! Loom model of the async pool's admission/finish/publish accounting (run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p surgepool --lib --release --target-dir target/loom -- loom`).
//!
//! The async pool runs on tokio, which loom cannot drive, so the pool itself cannot run
//! here. What *can* be modelled is the part of its protocol built on `std` primitives:
//! the real [`Accounting`] and [`Published`] types, behind a loom `Mutex`, driven exactly
//! as `pool/inner/` drives them:
//!
//! * admission (`try_admit`): under the lock, a closed pool rejects, an open one accepts
//!   and counts the task as running;
//! * a task's end (`finish`): under the lock, `running -= 1` and `Accounting::finish`;
//!   then, *without* the lock, the handle gets its result, and only then
//!   `Published::add` (`publish_ended`); if that says the pool is closing, the publisher
//!   takes the lock and signals the drain if `drained` holds;
//! * `close` (`mark_closed` + `notify_if_drained`): under the lock, `closed = true`,
//!   `Published::close`, then the drain check;
//! * `drained` = closed, nothing running or queued, and `published == ended`.
//!
//! What is checked, in every interleaving loom explores: the identities after every
//! transition; the drain is signalled at least once (no lost signal: a publisher racing
//! `close` either sees the flag or is seen by the closer's check); a drain signal never
//! comes while an ended task's handle still lacks its result; and the shutdown report's
//! `drained` counts exactly the non-cancelled ends after `close`.
//!
//! Not modelled: the queue's hand-off between workers (`start_queued`), idle workers and
//! their parkers, tokio's `Notify` (the drain signal is a counter here), wakers and the
//! limiter. Those are covered by `tests/stress_accounting.rs`, `tests/pool_shutdown.rs`
//! and the `pool_ops` fuzz target.

use super::{Accounting, Outcome, Published};
use crate::sync::{lock, thread, Arc, AtomicBool, Mutex, Ordering};

struct State {
    acct: Accounting,
    closed: bool,
    running: u64,
    /// Times the drain was signalled (tokio's `Notify::notify_waiters` in the pool).
    signals: u64,
}

struct Pool {
    state: Mutex<State>,
    published: Published,
    /// Per task: its handle has its result (set between the count and the publish).
    delivered: Vec<AtomicBool>,
}

impl Pool {
    fn new(tasks: usize) -> Arc<Pool> {
        Arc::new(Pool {
            state: Mutex::new(State {
                acct: Accounting::new(),
                closed: false,
                running: 0,
                signals: 0,
            }),
            published: Published::new(),
            delivered: (0..tasks).map(|_| AtomicBool::new(false)).collect(),
        })
    }

    fn drained(&self, st: &State) -> bool {
        st.closed && st.running == 0 && self.published.count() == st.acct.ended()
    }

    fn check(&self, st: &State) {
        let a = &st.acct;
        assert_eq!(a.submitted, a.accepted + a.rejected);
        assert_eq!(a.accepted, a.ended() + st.running);
        assert!(self.published.count() <= a.ended());
    }

    fn notify_if_drained(&self, st: &mut State) {
        if self.drained(st) {
            // Every ended task's handle has its result before the drain is signalled.
            let delivered = self
                .delivered
                .iter()
                .filter(|d| d.load(Ordering::Acquire))
                .count() as u64;
            assert_eq!(
                delivered,
                st.acct.ended(),
                "drained before a handle had its result"
            );
            st.signals += 1;
        }
    }

    /// `true` if accepted.
    fn admit(&self) -> bool {
        let mut st = lock(&self.state);
        let accepted = if st.closed {
            st.acct.reject();
            false
        } else {
            st.acct.accept();
            st.running += 1;
            true
        };
        self.check(&st);
        accepted
    }

    /// Ends task `index` (one that was admitted) with `outcome`, then publishes it.
    fn finish(&self, index: usize, outcome: Outcome) {
        {
            let mut st = lock(&self.state);
            st.running -= 1;
            st.acct.finish(outcome, None);
            self.check(&st);
        }
        self.delivered[index].store(true, Ordering::Release);
        if self.published.add(1) {
            let mut st = lock(&self.state);
            self.notify_if_drained(&mut st);
        }
    }

    fn close(&self) {
        let mut st = lock(&self.state);
        if !st.closed {
            st.closed = true;
            st.acct.shutting_down = true;
            self.published.close();
        }
        self.notify_if_drained(&mut st);
    }
}

/// Two running tasks end on two workers while a third thread closes the pool.
#[test]
fn loom_accounting_finish_and_publish_race_close() {
    loom::model(|| {
        let pool = Pool::new(2);
        assert!(pool.admit());
        assert!(pool.admit());
        let workers: Vec<_> = [Outcome::Completed, Outcome::Panicked]
            .into_iter()
            .enumerate()
            .map(|(i, outcome)| {
                let pool = pool.clone();
                thread::spawn(move || pool.finish(i, outcome))
            })
            .collect();
        pool.close();
        for w in workers {
            w.join().expect("worker");
        }
        let st = lock(&pool.state);
        assert!(pool.drained(&st));
        assert!(st.signals >= 1, "the drain was never signalled");
        assert!(st.acct.finished_since_shutdown <= 2);
        assert_eq!(st.acct.completed + st.acct.panicked, 2);
    });
}

/// A submitter races `close` while a task ends: the submit is either accepted (and its task
/// then ends and is published) or rejected, and the drain is signalled once all are.
#[test]
fn loom_accounting_admit_races_close_and_finish() {
    loom::model(|| {
        let pool = Pool::new(2);
        assert!(pool.admit());
        let submitter = {
            let pool = pool.clone();
            thread::spawn(move || {
                if pool.admit() {
                    pool.finish(1, Outcome::Cancelled);
                }
            })
        };
        let worker = {
            let pool = pool.clone();
            thread::spawn(move || pool.finish(0, Outcome::Completed))
        };
        pool.close();
        submitter.join().expect("submitter");
        worker.join().expect("worker");
        let st = lock(&pool.state);
        assert_eq!(st.acct.submitted, 2);
        assert!(pool.drained(&st));
        assert!(st.signals >= 1, "the drain was never signalled");
        // Cancellations never count as drained.
        assert!(st.acct.finished_since_shutdown <= 1);
    });
}
