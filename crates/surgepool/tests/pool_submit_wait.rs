//! `submit` waits for room FIFO-fair and cancel-safely; `submit_timeout` hands the future
//! back in `Timeout`; `try_submit` does not barge past parked callers (issue 2, point 2).
//!
//! The waits are driven by hand with `tokio_test::task::spawn` (a mock task whose wakeups
//! we can observe), the pool's tasks by yielding to the current-thread runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use surgepool::{Limit, Pool, SubmitError, TaskHandle};
use tokio::sync::oneshot;
use tokio_test::task;
use tokio_test::{assert_pending, assert_ready};

mod support;
use support::assert_identities;

/// One slot, no queue.
fn single_slot() -> Pool {
    Pool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(0)
        .build()
        .unwrap()
}

/// Takes the pool's only slot until the sender is used (or dropped).
fn occupy(pool: &Pool) -> (oneshot::Sender<()>, TaskHandle<()>) {
    let (tx, rx) = oneshot::channel::<()>();
    let handle = pool
        .try_submit(async move {
            let _ = rx.await;
        })
        .unwrap();
    (tx, handle)
}

/// Lets the pool's workers (tasks on this current-thread runtime) run until idle.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// A future that records whether it was ever polled or dropped.
struct Probe {
    polled: Arc<AtomicBool>,
    dropped: Arc<AtomicBool>,
}

impl std::future::Future for Probe {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.polled.store(true, Ordering::SeqCst);
        std::task::Poll::Ready(())
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

fn probe() -> (Probe, Arc<AtomicBool>, Arc<AtomicBool>) {
    let polled = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    (
        Probe {
            polled: polled.clone(),
            dropped: dropped.clone(),
        },
        polled,
        dropped,
    )
}

#[tokio::test]
async fn submit_with_room_is_admitted_at_once() {
    let pool = single_slot();
    let mut wait = task::spawn(pool.submit(async { 1 }));
    let handle = assert_ready!(wait.poll()).unwrap();
    assert_eq!(handle.await.unwrap(), 1);
    let s = pool.snapshot();
    assert_eq!((s.submitted, s.accepted, s.rejected), (1, 1, 0));
}

#[tokio::test]
async fn submit_waits_until_a_slot_frees_and_is_woken_for_it() {
    let pool = single_slot();
    let (release, busy) = occupy(&pool);
    let mut wait = task::spawn(pool.submit(async { 2 }));
    assert_pending!(wait.poll());
    assert_pending!(wait.poll());
    assert!(!wait.is_woken());
    release.send(()).unwrap();
    busy.await.unwrap();
    assert!(
        wait.is_woken(),
        "the freed slot must wake the parked submitter"
    );
    let handle = assert_ready!(wait.poll()).unwrap();
    assert_eq!(handle.await.unwrap(), 2);
}

/// A `submit` that had to wait and was then admitted is one offer, accepted once: it
/// must not also count as rejected.
#[tokio::test]
async fn a_submit_that_waited_counts_once_as_accepted() {
    let pool = single_slot();
    let (release, busy) = occupy(&pool);
    let mut wait = task::spawn(pool.submit(async {}));
    assert_pending!(wait.poll());
    release.send(()).unwrap();
    busy.await.unwrap();
    assert_ready!(wait.poll()).unwrap().await.unwrap();
    let s = pool.snapshot();
    assert_eq!((s.submitted, s.accepted, s.rejected), (2, 2, 0), "{s:?}");
    assert_identities(&s);
}

#[tokio::test]
async fn dropping_the_wait_admits_nothing_and_drops_the_future_unpolled() {
    let pool = single_slot();
    let (release, busy) = occupy(&pool);
    let (fut, polled, dropped) = probe();
    let mut wait = task::spawn(pool.submit(fut));
    assert_pending!(wait.poll());
    drop(wait);
    assert!(dropped.load(Ordering::SeqCst));
    release.send(()).unwrap();
    busy.await.unwrap();
    settle().await;
    assert!(
        !polled.load(Ordering::SeqCst),
        "a cancelled submit ran its future"
    );
    let s = pool.snapshot();
    // Only the busy task was ever offered: the cancelled wait is no offer at all.
    assert_eq!((s.submitted, s.accepted, s.rejected), (1, 1, 0), "{s:?}");
    // And it left the line: try_submit is not blocked by a ghost.
    pool.try_submit(async {}).unwrap().await.unwrap();
}

#[tokio::test]
async fn waiters_are_admitted_first_come_first_served() {
    let pool = single_slot();
    let (release, busy) = occupy(&pool);
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waits: Vec<_> = (0..5)
        .map(|i| {
            let order = order.clone();
            task::spawn(pool.submit(async move { order.lock().unwrap().push(i) }))
        })
        .collect();
    for w in &mut waits {
        assert_pending!(w.poll());
    }
    release.send(()).unwrap();
    busy.await.unwrap();
    let mut admitted = Vec::new();
    while admitted.len() < 5 {
        // Poll in reverse arrival order: only the head of the line may get in.
        for i in (0..5).rev() {
            if admitted.contains(&i) {
                continue;
            }
            if let std::task::Poll::Ready(r) = waits[i].poll() {
                admitted.push(i);
                r.unwrap().await.unwrap();
            }
        }
        settle().await;
    }
    assert_eq!(admitted, [0, 1, 2, 3, 4]);
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn try_submit_does_not_barge_past_a_parked_submitter() {
    let pool = single_slot();
    let (release, busy) = occupy(&pool);
    let mut wait = task::spawn(pool.submit(async { "waited" }));
    assert_pending!(wait.poll());
    release.send(()).unwrap();
    busy.await.unwrap();
    // The slot is free, but it belongs to the parked caller.
    assert_eq!(pool.snapshot().running, 0);
    let (fut, polled, _) = probe();
    match pool.try_submit(fut) {
        Err(SubmitError::Full(fut)) => drop(fut),
        other => panic!("try_submit barged: {other:?}"),
    }
    assert!(!polled.load(Ordering::SeqCst));
    let h = assert_ready!(wait.poll()).unwrap();
    assert_eq!(h.await.unwrap(), "waited");
    let s = pool.snapshot();
    assert_eq!((s.submitted, s.accepted, s.rejected), (3, 2, 1), "{s:?}");
}

/// The head of the line was woken for a slot but cancelled before taking it: the slot
/// passes to the next in line, nobody is stranded.
#[tokio::test]
async fn a_woken_waiter_that_is_dropped_passes_its_turn_on() {
    let pool = single_slot();
    let (release, busy) = occupy(&pool);
    let mut first = task::spawn(pool.submit(async { 1 }));
    let mut second = task::spawn(pool.submit(async { 2 }));
    assert_pending!(first.poll());
    assert_pending!(second.poll());
    release.send(()).unwrap();
    busy.await.unwrap();
    assert!(first.is_woken());
    assert!(!second.is_woken());
    drop(first);
    assert!(
        second.is_woken(),
        "the turn was lost with the dropped waiter"
    );
    assert_eq!(assert_ready!(second.poll()).unwrap().await.unwrap(), 2);
    assert_identities(&pool.snapshot());
}

#[tokio::test(start_paused = true)]
async fn submit_timeout_hands_the_future_back_exactly_at_the_deadline() {
    let pool = single_slot();
    let (_release, _busy) = occupy(&pool);
    let (fut, polled, dropped) = probe();
    let mut wait = task::spawn(pool.submit_timeout(fut, Duration::from_millis(10)));
    assert_pending!(wait.poll());
    tokio::time::advance(Duration::from_millis(9)).await;
    assert_pending!(wait.poll());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(wait.is_woken());
    match assert_ready!(wait.poll()) {
        Err(SubmitError::Timeout(fut)) => {
            assert!(!dropped.load(Ordering::SeqCst));
            fut.await;
            assert!(polled.load(Ordering::SeqCst));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    let s = pool.snapshot();
    assert_eq!((s.submitted, s.accepted, s.rejected), (2, 1, 1), "{s:?}");
    // The timed-out caller left the line.
    drop(wait);
    assert!(pool.try_submit(async {}).unwrap_err().is_full());
}

#[tokio::test(start_paused = true)]
async fn submit_timeout_of_zero_tries_once() {
    let pool = single_slot();
    let h = pool
        .submit_timeout(async { 1 }, Duration::ZERO)
        .await
        .unwrap();
    let err = pool
        .submit_timeout(async { 2 }, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(err.into_inner().await, 2);
    assert_eq!(h.await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn submit_timeout_of_duration_max_waits_without_panicking() {
    let pool = single_slot();
    let (release, busy) = occupy(&pool);
    let mut wait = task::spawn(pool.submit_timeout(async { 3 }, Duration::MAX));
    assert_pending!(wait.poll());
    tokio::time::advance(Duration::from_secs(1 << 30)).await;
    assert_pending!(wait.poll());
    release.send(()).unwrap();
    busy.await.unwrap();
    assert_eq!(assert_ready!(wait.poll()).unwrap().await.unwrap(), 3);
}

#[tokio::test]
async fn close_hands_every_waiter_its_future_back() {
    let pool = single_slot();
    let (release, busy) = occupy(&pool);
    let mut waits: Vec<_> = (0..3)
        .map(|i| task::spawn(pool.submit(async move { i })))
        .collect();
    for w in &mut waits {
        assert_pending!(w.poll());
    }
    pool.close();
    for (i, w) in waits.iter_mut().enumerate() {
        assert!(w.is_woken());
        match assert_ready!(w.poll()) {
            Err(SubmitError::Closed(fut)) => assert_eq!(fut.await, i),
            other => panic!("expected Closed, got {other:?}"),
        }
    }
    // Closing does not stop the running task.
    release.send(()).unwrap();
    busy.await.unwrap();
    let err = pool.submit(async {}).await.unwrap_err();
    assert!(err.is_closed());
    let s = pool.snapshot();
    assert_eq!((s.submitted, s.accepted, s.rejected), (5, 1, 4), "{s:?}");
    assert_identities(&s);
}

/// A queue with room admits `submit` at once, even at the limit.
#[tokio::test]
async fn submit_queues_when_the_queue_has_room() {
    let pool = Pool::builder()
        .limit(Limit::fixed(1))
        .queue_capacity(1)
        .build()
        .unwrap();
    let (release, busy) = occupy(&pool);
    let mut wait = task::spawn(pool.submit(async { 4 }));
    let queued = assert_ready!(wait.poll()).unwrap();
    assert_eq!(pool.snapshot().queued, 1);
    let mut wait = task::spawn(pool.submit(async { 5 }));
    assert_pending!(wait.poll());
    release.send(()).unwrap();
    busy.await.unwrap();
    assert_eq!(queued.await.unwrap(), 4);
    assert_eq!(assert_ready!(wait.poll()).unwrap().await.unwrap(), 5);
}

/// Regression: a slot freed between a `submit`'s failed admission and its registration
/// in the line must not be missed (a lost wakeup would leave the submitter parked with
/// a free slot and nothing left to wake it). Runs the race many times on two threads;
/// a lost wakeup shows as a hang, caught by the watchdog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_freed_while_a_submitter_parks_is_not_missed() {
    const ROUNDS: usize = if cfg!(debug_assertions) {
        2_000
    } else {
        20_000
    };
    let pool = single_slot();
    for round in 0..ROUNDS {
        let (release, busy) = occupy(&pool);
        let submitter = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.submit(async {}).await.unwrap().await.unwrap() })
        };
        if round % 2 == 0 {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
        busy.await.unwrap();
        // Watchdog only (a hang is the failure); the test never depends on timing.
        tokio::time::timeout(Duration::from_secs(60), submitter)
            .await
            .unwrap_or_else(|_| panic!("round {round}: the submitter missed the free slot"))
            .unwrap();
    }
    let s = pool.snapshot();
    assert_eq!(s.completed, 2 * ROUNDS as u64);
    assert_eq!(s.rejected, 0, "{s:?}");
}
