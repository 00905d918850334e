//! The one switch between `std` and loom (STYLE.md): every synchronisation primitive that a
//! loom model must see is imported from here, never from `std` directly.

#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    Condvar, Mutex, MutexGuard,
};

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    Condvar, Mutex, MutexGuard,
};

/// Always `std`'s `Arc`: the pools need `Arc<dyn Trait>` and `self: &Arc<Self>`, which
/// loom's `Arc` cannot express. Loom still sees every lock, condvar, atomic and thread.
pub(crate) use std::sync::Arc;

/// Threads: loom's under `cfg(loom)`, so models can run the blocking pool's workers.
#[cfg(not(loom))]
pub(crate) use std::thread;

#[cfg(loom)]
pub(crate) use loom::thread;

/// Locks a mutex, ignoring poisoning: the pools never run user code while holding a lock,
/// so a poisoned lock only means a panic elsewhere, and the state it guards is consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Keeps a value on cache lines of its own (128 bytes: two 64-byte lines, as the adjacent
/// line prefetcher of x86 pulls pairs), so writes to it do not evict its neighbours from
/// other cores' caches, and theirs do not evict it (false sharing).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}
