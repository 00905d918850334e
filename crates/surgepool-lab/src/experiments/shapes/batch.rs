//! The completion signal of the "fire-and-forget" shapes: the Rust form of the seed's
//! `sync.WaitGroup` + `atomic.AddUint64`.
//!
//! Every op adds its result to one atomic sum and counts itself done; the op that finishes a
//! window wakes the waiter (a tokio task or an OS thread). The spawn, pool and surgepool
//! shapes that do not return a handle all use this same primitive, so that their rows differ
//! only in how the work is handed over (the seed's lesson: hold the synchronisation constant).
//!
//! A `Batch` is leaked once per shape (`&'static`): the ops capture a plain reference, as the
//! Go closures capture `&wg`, instead of paying two more atomic read-modify-writes per op for
//! an `Arc` clone and drop.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

use tokio::sync::Notify;

/// An atomic sum plus a countdown of the ops still running in the current window.
#[derive(Debug)]
pub(crate) struct Batch {
    // The two per-op atomics share one cache line: one line moves per op, not two.
    sum: AtomicU64,
    remaining: AtomicUsize,
    // Only touched once per window, by the last op and the waiter.
    notify: Notify,
    lock: Mutex<()>,
    done: Condvar,
}

impl Batch {
    /// A new batch that lives as long as the process.
    pub(crate) fn leak() -> &'static Batch {
        Box::leak(Box::new(Batch {
            sum: AtomicU64::new(0),
            remaining: AtomicUsize::new(0),
            notify: Notify::new(),
            lock: Mutex::new(()),
            done: Condvar::new(),
        }))
    }

    /// Expects `ops` completions. Call only when the previous window is done, and before
    /// handing out any op of the new one (handing out is what publishes this store).
    pub(crate) fn arm(&self, ops: usize) {
        debug_assert_eq!(self.remaining.load(Ordering::Acquire), 0);
        self.remaining.store(ops, Ordering::Release);
    }

    /// One op's end: add its result, count it done, wake the waiter if it was the last.
    #[inline]
    pub(crate) fn complete(&self, value: u64) {
        self.sum.fetch_add(value, Ordering::Relaxed);
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.notify.notify_one();
            // Taking the lock orders this wake-up after a blocking waiter's check.
            let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.done.notify_all();
        }
    }

    /// Waits (async) until every op of the window completed.
    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Register before checking, so a wake-up between the check and the await is kept.
            notified.as_mut().enable();
            if self.remaining.load(Ordering::Acquire) == 0 {
                return;
            }
            // A permit left over from an earlier window only causes one more check.
            notified.await;
        }
    }

    /// Blocks the calling thread until every op of the window completed.
    pub(crate) fn wait_blocking(&self) {
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        while self.remaining.load(Ordering::Acquire) != 0 {
            guard = self
                .done
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The sum so far, resetting it for the next run.
    pub(crate) fn take_sum(&self) -> u64 {
        self.sum.swap(0, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_wait_sees_every_op_of_other_threads() {
        let batch = Batch::leak();
        for round in 0..20u64 {
            batch.arm(8);
            let threads: Vec<_> = (0..8u64)
                .map(|i| std::thread::spawn(move || batch.complete(round + i)))
                .collect();
            batch.wait_blocking();
            assert_eq!(batch.take_sum(), 8 * round + 28);
            for t in threads {
                t.join().unwrap();
            }
        }
    }

    #[test]
    fn async_wait_sees_every_op_of_other_tasks() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let batch = Batch::leak();
        rt.block_on(async {
            for _ in 0..20 {
                batch.arm(100);
                for i in 0..100u64 {
                    tokio::spawn(async move { batch.complete(i) });
                }
                batch.wait().await;
                assert_eq!(batch.take_sum(), 4950);
            }
        });
    }

    #[test]
    fn empty_window_returns_at_once() {
        let batch = Batch::leak();
        batch.arm(0);
        batch.wait_blocking();
        block_on_now(batch.wait());
    }

    /// Polls a future that must be ready at once.
    fn block_on_now<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }
}
