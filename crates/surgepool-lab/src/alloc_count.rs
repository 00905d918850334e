//! A counting global allocator: how many allocations (and bytes) a region of code made,
//! across all threads.
//!
//! The lab installs [`CountingAlloc`] as the process's `#[global_allocator]`. It forwards to
//! the allocator the build chose ([`INNER`]: the system's `malloc` by default, jemalloc or
//! mimalloc with the crate's `jemalloc` / `mimalloc` features) and counts every allocation
//! in one of [`SLOTS`] cache-padded counter slots, chosen per thread, so that threads do
//! not fight over one cache line: a single shared counter would add a contended atomic to
//! every `malloc` and make the allocating shapes (spawn per request) look slower than they
//! are. Reading the counters
//! ([`snapshot`]) sums all slots; only the difference between two snapshots means anything.
//!
//! The cost per allocation is a thread-local read and two relaxed `fetch_add`s on a line the
//! thread usually owns alone (a few ns); the counters are always on, as Go's `-benchmem`.
//!
//! What counts as one allocation: `alloc`, `alloc_zeroed`, and `realloc` (a `realloc` is
//! counted as a new allocation of its new size, which is what a Go slice growth reports).

#[cfg(not(any(feature = "jemalloc", feature = "mimalloc")))]
use std::alloc::System;
use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Number of counter slots. Threads beyond this share slots (still exact, only slower).
const SLOTS: usize = 64;

/// The allocator that does the work (`ALLOCATOR` names it in the lab's JSON).
#[cfg(not(any(feature = "jemalloc", feature = "mimalloc")))]
static INNER: System = System;
#[cfg(not(any(feature = "jemalloc", feature = "mimalloc")))]
pub(crate) const ALLOCATOR: &str = "system";
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
static INNER: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
pub(crate) const ALLOCATOR: &str = "jemalloc";
#[cfg(feature = "mimalloc")]
static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(feature = "mimalloc")]
pub(crate) const ALLOCATOR: &str = "mimalloc";

/// The process-wide allocator.
#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// The system allocator, with counters.
#[derive(Debug)]
pub(crate) struct CountingAlloc;

/// One thread's counters, on its own cache lines (128 bytes: adjacent-line prefetch).
#[derive(Debug)]
#[repr(align(128))]
struct Slot {
    allocs: AtomicU64,
    bytes: AtomicU64,
    frees: AtomicU64,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            allocs: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            frees: AtomicU64::new(0),
        }
    }
}

static COUNTERS: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // `const` and without `Drop`: reading it never allocates nor registers a destructor,
    // which matters inside an allocator.
    static MY_SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn my_slot() -> &'static Slot {
    let index = MY_SLOT
        .try_with(|cell| {
            let mut index = cell.get();
            if index == usize::MAX {
                index = NEXT_SLOT.fetch_add(1, Relaxed) % SLOTS;
                cell.set(index);
            }
            index
        })
        .unwrap_or(0);
    &COUNTERS[index]
}

#[inline]
fn count_alloc(size: usize) {
    let slot = my_slot();
    slot.allocs.fetch_add(1, Relaxed);
    slot.bytes.fetch_add(size as u64, Relaxed);
}

// SAFETY: every method forwards to `INNER` with the caller's arguments unchanged, so this
// allocator upholds exactly the guarantees `INNER` does; the counting touches only atomics
// and a `const` thread-local, and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: same contract as ours, forwarded.
        unsafe { INNER.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: same contract as ours, forwarded.
        unsafe { INNER.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_alloc(new_size);
        // SAFETY: same contract as ours, forwarded.
        unsafe { INNER.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        my_slot().frees.fetch_add(1, Relaxed);
        // SAFETY: same contract as ours, forwarded.
        unsafe { INNER.dealloc(ptr, layout) }
    }
}

/// The process's allocation counters at one instant (cumulative since start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AllocSnapshot {
    /// Allocations made (including reallocations).
    pub(crate) allocs: u64,
    /// Bytes requested by those allocations.
    pub(crate) bytes: u64,
    /// Deallocations.
    pub(crate) frees: u64,
}

impl AllocSnapshot {
    /// What happened between `earlier` and `self`.
    pub(crate) fn since(&self, earlier: &AllocSnapshot) -> AllocSnapshot {
        AllocSnapshot {
            allocs: self.allocs.wrapping_sub(earlier.allocs),
            bytes: self.bytes.wrapping_sub(earlier.bytes),
            frees: self.frees.wrapping_sub(earlier.frees),
        }
    }
}

/// Sums the counters of every thread. Costs a few hundred ns: take it outside timed code.
pub(crate) fn snapshot() -> AllocSnapshot {
    COUNTERS
        .iter()
        .fold(AllocSnapshot::default(), |acc, slot| AllocSnapshot {
            allocs: acc.allocs.wrapping_add(slot.allocs.load(Relaxed)),
            bytes: acc.bytes.wrapping_add(slot.bytes.load(Relaxed)),
            frees: acc.frees.wrapping_add(slot.frees.load(Relaxed)),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_allocations_of_this_thread() {
        let before = snapshot();
        let v: Vec<u8> = Vec::with_capacity(1000);
        std::hint::black_box(&v);
        drop(v);
        let d = snapshot().since(&before);
        // Other test threads may allocate at the same time, so only lower bounds hold.
        assert!(d.allocs >= 1, "{d:?}");
        assert!(d.bytes >= 1000, "{d:?}");
        assert!(d.frees >= 1, "{d:?}");
    }

    #[test]
    fn counts_allocations_of_other_threads() {
        let before = snapshot();
        std::thread::spawn(|| std::hint::black_box(vec![0u8; 4096]))
            .join()
            .unwrap();
        let d = snapshot().since(&before);
        assert!(d.bytes >= 4096, "{d:?}");
    }
}
