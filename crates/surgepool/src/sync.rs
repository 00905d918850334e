//! The one switch between `std` and loom (STYLE.md): every synchronisation primitive that a
//! loom model must see is imported from here, never from `std` directly.

#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    Arc, Condvar, Mutex, MutexGuard,
};

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    Condvar, Mutex, MutexGuard,
};

/// `Arc` stays `std`'s under loom: the pools need `self: &Arc<Self>` receivers and
/// `Arc<dyn Trait>` coercions, which loom's `Arc` does not support (the crate did not
/// compile under `cfg(loom)`). Reference counts are not part of the state machines the
/// models explore; the locks, condvars, atomics and threads are, and those stay loom's.
#[cfg(loom)]
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
