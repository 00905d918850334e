//! The fire-and-forget path allocates nothing per task (issue 4: 0 allocs/op), measured
//! with a counting global allocator. This file is its own test binary with a single test,
//! so no other test allocates during the measured window; the counter is one global
//! atomic, so allocations on the pool's worker threads count as well as the caller's.
//!
//! What is measured: 10,000 `try_spawn` calls of a small closure (falling back to
//! `spawn_timeout` when the pool is full) *and* their completion on the workers, after a
//! warm-up that started the threads and grew the queue and the waiter list to their
//! largest size. Two control runs show that the counter sees what it should: a closure too
//! large to be stored inline costs exactly one allocation, and `try_submit` (a handle
//! and its outcome slot) exactly one too.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use surgepool::{BlockingPool, Limit, SubmitError};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded to `System` unchanged; the counter has no other effect.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator, that is from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const LIMIT: usize = 2;
const QUEUE: usize = 256;
const WARM_UP: usize = 10_000;
const MEASURED: usize = 10_000;

/// Closures that finished; statics, so that a closure captures nothing that allocates.
static RAN: AtomicUsize = AtomicUsize::new(0);
/// Holds the warm-up's first closures on the workers until the queue was filled.
static GATE_OPEN: AtomicBool = AtomicBool::new(false);

/// A small closure: 8 bytes of captures, stored inline.
fn small(i: usize) -> impl FnOnce() + Send + 'static {
    move || {
        black_box(i);
        RAN.fetch_add(1, Ordering::Release);
    }
}

/// A closure with 128 bytes of captures: too large for the inline room.
fn large(i: usize) -> impl FnOnce() + Send + 'static {
    let payload = [i; 16];
    move || {
        black_box(payload);
        RAN.fetch_add(1, Ordering::Release);
    }
}

/// Spawns `n` closures, waiting for room when the pool is full: every one is accepted.
/// Allocates nothing itself.
fn spawn_all<F>(pool: &BlockingPool, n: usize, make: impl Fn(usize) -> F)
where
    F: FnOnce() + Send + 'static,
{
    for i in 0..n {
        match pool.try_spawn(make(i)) {
            Ok(()) => {}
            Err(SubmitError::Full(f)) => {
                // A hang guard, not a timing assumption: room comes as the workers run.
                if pool.spawn_timeout(f, Duration::from_secs(120)).is_err() {
                    panic!("no room within two minutes");
                }
            }
            Err(_) => panic!("the pool is open"),
        }
    }
}

/// Blocks (spinning, which allocates nothing) until `total` closures ran and their
/// workers counted them.
fn wait_until_ran(pool: &BlockingPool, total: usize) {
    while RAN.load(Ordering::Acquire) < total {
        std::thread::yield_now();
    }
    // The last worker releases its slot in the same locked step that counts the closure
    // and parks the worker on the idle list; `is_closed` takes that lock, so once this
    // returns the step is over.
    while pool.limiter_stats().in_flight > 0 {
        std::thread::yield_now();
    }
    assert!(!pool.is_closed());
}

/// Allocations made while `work` runs, on any thread.
fn allocations(work: impl FnOnce()) -> u64 {
    let before = ALLOCS.load(Ordering::SeqCst);
    work();
    ALLOCS.load(Ordering::SeqCst) - before
}

#[test]
fn try_spawn_of_a_small_closure_allocates_nothing_in_steady_state() {
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(LIMIT))
        .min_workers(LIMIT)
        .queue_capacity(QUEUE)
        // Threads never retire (and are never re-spawned) during the test.
        .idle_timeout(Duration::from_secs(3600))
        .build()
        .unwrap();

    // Warm-up, part 1: hold both workers, then fill the queue to capacity, so its
    // `VecDeque` grows to its largest size now; one `spawn_timeout` that times out
    // grows the waiter list.
    for _ in 0..LIMIT {
        pool.try_spawn(|| {
            while !GATE_OPEN.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            RAN.fetch_add(1, Ordering::Release);
        })
        .unwrap();
    }
    for i in 0..QUEUE {
        pool.try_spawn(small(i)).unwrap();
    }
    assert!(pool.try_spawn(small(0)).unwrap_err().is_full());
    assert!(pool
        .spawn_timeout(small(0), Duration::from_millis(1))
        .unwrap_err()
        .is_timeout());
    assert_eq!(pool.snapshot().queued, QUEUE as u64);
    GATE_OPEN.store(true, Ordering::Release);

    // Warm-up, part 2: the steady state the window measures.
    spawn_all(&pool, WARM_UP, small);
    let mut total = LIMIT + QUEUE + WARM_UP;
    wait_until_ran(&pool, total);

    // The window.
    total += MEASURED;
    let inline = allocations(|| {
        spawn_all(&pool, MEASURED, small);
        wait_until_ran(&pool, total);
    });

    // Controls: the counter sees allocations on this path when there are some.
    total += MEASURED;
    let spilled = allocations(|| {
        spawn_all(&pool, MEASURED, large);
        wait_until_ran(&pool, total);
    });
    total += MEASURED;
    let handles = allocations(|| {
        for i in 0..MEASURED {
            let mut f = small(i);
            loop {
                match pool.try_submit(f) {
                    Ok(handle) => break drop(handle),
                    Err(SubmitError::Full(back)) => {
                        f = back;
                        std::thread::yield_now();
                    }
                    Err(_) => panic!("the pool is open"),
                }
            }
        }
        wait_until_ran(&pool, total);
    });

    let s = pool.snapshot();
    let report = pool.shutdown();
    assert!(!report.timed_out);
    assert_eq!(
        (s.accepted, s.completed),
        (total as u64, total as u64),
        "{s:?}"
    );

    assert_eq!(
        inline, 0,
        "try_spawn of a small closure: {inline} allocations for {MEASURED} closures"
    );
    assert_eq!(
        spilled, MEASURED as u64,
        "a closure too large to be stored inline costs one allocation"
    );
    assert_eq!(
        handles, MEASURED as u64,
        "try_submit costs one allocation (closure and outcome slot together)"
    );
}
