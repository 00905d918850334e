//! The pool keeps its promise to `Pin` (issue 16): once a task's future was polled, it is
//! polled and dropped at the same address, whether it sits inline in a detached job
//! (`SmallBox` storage, `pool/job.rs`), on the heap behind a detached job, or inside the
//! shared task of a handle (`pool/task.rs`). These are the tests that the `// SAFETY:`
//! comments of those files name: a move of a pinned future fails them directly, and under
//! AddressSanitizer a self-borrowing future that was moved reads freed or stale memory.

use std::future::Future;
use std::marker::PhantomPinned;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use surgepool::{Limit, Pool};

mod support;
use support::assert_identities;

/// What a [`Pinned`] future saw: its polls, and how often it found itself moved.
#[derive(Default)]
struct Seen {
    polls: AtomicUsize,
    moves: AtomicUsize,
    drops_in_place: AtomicUsize,
}

/// A `!Unpin` future that remembers the address of its first poll and counts every later
/// poll (and its drop) that happens elsewhere. `PAD` makes it too large for inline storage.
struct Pinned<const PAD: usize> {
    at: usize,
    pending_polls: usize,
    /// After its pending polls, pends for ever (without waking itself) instead of ending.
    forever: bool,
    seen: Arc<Seen>,
    _pad: [u8; PAD],
    _pin: PhantomPinned,
}

impl<const PAD: usize> Pinned<PAD> {
    fn new(pending_polls: usize, seen: &Arc<Seen>) -> Self {
        Pinned {
            at: 0,
            pending_polls,
            forever: false,
            seen: seen.clone(),
            _pad: [0; PAD],
            _pin: PhantomPinned,
        }
    }

    fn forever(mut self) -> Self {
        self.forever = true;
        self
    }

    fn check(&self) {
        let here = self as *const Self as usize;
        if self.at != 0 && self.at != here {
            self.seen.moves.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl<const PAD: usize> Future for Pinned<PAD> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: no field is moved out; `at` and `pending_polls` are plain data.
        let this = unsafe { self.get_unchecked_mut() };
        this.check();
        this.at = this as *const Self as usize;
        this.seen.polls.fetch_add(1, Ordering::SeqCst);
        if this.pending_polls == 0 {
            return if this.forever {
                Poll::Pending
            } else {
                Poll::Ready(())
            };
        }
        this.pending_polls -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<const PAD: usize> Drop for Pinned<PAD> {
    fn drop(&mut self) {
        self.check();
        if self.at != 0 && self.at == self as *const Self as usize {
            self.seen.drops_in_place.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Small enough for the detached job's inline storage (64 bytes).
type Small = Pinned<0>;
/// Too large for it: boxed.
type Large = Pinned<256>;

fn pool() -> Pool {
    Pool::builder().limit(Limit::fixed(2)).build().unwrap()
}

#[tokio::test]
async fn a_small_detached_future_is_polled_and_dropped_where_it_lies() {
    assert!(std::mem::size_of::<Small>() <= 64);
    let pool = pool();
    let seen = Arc::new(Seen::default());
    pool.try_spawn(Small::new(3, &seen)).unwrap();
    pool.shutdown().await;
    assert_eq!(seen.polls.load(Ordering::SeqCst), 4);
    assert_eq!(seen.moves.load(Ordering::SeqCst), 0);
    assert_eq!(seen.drops_in_place.load(Ordering::SeqCst), 1);
    assert_identities(&pool.snapshot());
}

#[tokio::test]
async fn a_large_detached_future_is_polled_and_dropped_where_it_lies() {
    assert!(std::mem::size_of::<Large>() > 64);
    let pool = pool();
    let seen = Arc::new(Seen::default());
    pool.try_spawn(Large::new(3, &seen)).unwrap();
    pool.shutdown().await;
    assert_eq!(seen.polls.load(Ordering::SeqCst), 4);
    assert_eq!(seen.moves.load(Ordering::SeqCst), 0);
    assert_eq!(seen.drops_in_place.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_future_with_a_handle_is_polled_and_dropped_where_it_lies() {
    let pool = pool();
    let seen = Arc::new(Seen::default());
    let handle = pool.try_submit(Small::new(3, &seen)).unwrap();
    handle.await.unwrap();
    pool.shutdown().await;
    assert_eq!(seen.polls.load(Ordering::SeqCst), 4);
    assert_eq!(seen.moves.load(Ordering::SeqCst), 0);
    assert_eq!(seen.drops_in_place.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn futures_cancelled_midway_are_dropped_where_they_lie() {
    let pool = pool();
    let seen = Arc::new(Seen::default());
    // Polled a few times, then pending for ever: the shutdown's deadline drops them.
    pool.try_spawn(Small::new(2, &seen).forever()).unwrap();
    let handle = pool.try_submit(Large::new(2, &seen).forever()).unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(seen.polls.load(Ordering::SeqCst), 6);
    let report = pool.shutdown_timeout(Duration::from_millis(1)).await;
    assert!(report.timed_out);
    assert!(handle.await.unwrap_err().is_cancelled());
    assert_eq!(seen.moves.load(Ordering::SeqCst), 0);
    assert_eq!(seen.drops_in_place.load(Ordering::SeqCst), 2);
    assert_identities(&pool.snapshot());
}

#[tokio::test]
async fn a_self_borrowing_inline_future_keeps_its_borrow_valid() {
    // An async block that holds a reference into its own state across awaits: moved after
    // its first poll, the reference would point at the old place (ASan: stack or heap use
    // after free, depending on where the job was).
    let pool = pool();
    let sum = Arc::new(AtomicUsize::new(0));
    let out = sum.clone();
    pool.try_spawn(async move {
        let local = [1usize, 2, 3, 4];
        let borrowed = &local;
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        out.store(borrowed.iter().sum(), Ordering::SeqCst);
    })
    .unwrap();
    pool.shutdown().await;
    assert_eq!(sum.load(Ordering::SeqCst), 10);
}
