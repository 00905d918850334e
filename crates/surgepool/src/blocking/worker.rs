//! A worker thread: runs one closure at a time, then the next queued one, or parks on its
//! own condvar until a closure is handed to it, its idle timeout passes, or the pool closes.

use tokio::time::Instant;

use super::inner::{AfterRun, IdleDecision, Inner, Running};
use crate::sync::{lock, thread, Arc, AtomicBool, Condvar, Mutex, Ordering};

pub(crate) struct ThreadParker {
    state: Mutex<ParkState>,
    wake: Condvar,
    /// Set with the job (or exit) so an idle thread can spin on it without the lock.
    ready: AtomicBool,
}

#[derive(Default)]
struct ParkState {
    job: Option<Running>,
    exit: bool,
    /// The thread is blocked on the condvar: only then is a notify (a syscall) needed.
    sleeping: bool,
}

/// How often an idle thread polls for a job before it blocks: a hand-off that comes within
/// a few microseconds then costs no syscall on either side (crossbeam's `Backoff` idea).
/// Loom explores every iteration, so it gets none.
#[cfg(not(loom))]
const SPINS: u32 = 64;
#[cfg(not(loom))]
const YIELDS: u32 = 8;
#[cfg(loom)]
const SPINS: u32 = 0;
#[cfg(loom)]
const YIELDS: u32 = 0;

impl ThreadParker {
    pub(crate) fn new() -> ThreadParker {
        ThreadParker {
            state: Mutex::new(ParkState::default()),
            wake: Condvar::new(),
            ready: AtomicBool::new(false),
        }
    }

    pub(crate) fn give(&self, running: Running) {
        let mut st = lock(&self.state);
        st.job = Some(running);
        self.ready.store(true, Ordering::Release);
        if st.sleeping {
            self.wake.notify_one();
        }
    }

    pub(crate) fn take(&self) -> Option<Running> {
        lock(&self.state).job.take()
    }

    pub(crate) fn exit(&self) {
        let mut st = lock(&self.state);
        st.exit = true;
        self.ready.store(true, Ordering::Release);
        if st.sleeping {
            self.wake.notify_one();
        }
    }

    /// `true` once `close` told this (idle) thread to end; it was counted out then.
    pub(crate) fn told_to_exit(&self) -> bool {
        lock(&self.state).exit
    }

    /// Spins, then yields, briefly, until a job (or exit) is there.
    fn spin_for_job(&self) {
        for _ in 0..SPINS {
            if self.ready.load(Ordering::Acquire) {
                return;
            }
            std::hint::spin_loop();
        }
        for _ in 0..YIELDS {
            if self.ready.load(Ordering::Acquire) {
                return;
            }
            thread::yield_now();
        }
    }

    /// Waits for a job until `until`; `Err(())` when the time ran out.
    fn wait(&self, until: Option<Instant>) -> Result<Option<Running>, ()> {
        self.spin_for_job();
        let mut st = lock(&self.state);
        loop {
            if let Some(job) = st.job.take() {
                self.ready.store(false, Ordering::Relaxed);
                return Ok(Some(job));
            }
            if st.exit {
                return Ok(None);
            }
            st.sleeping = true;
            match until {
                None => {
                    st = match self.wake.wait(st) {
                        Ok(guard) => guard,
                        Err(poisoned) => poisoned.into_inner(),
                    }
                }
                Some(until) => {
                    let now = Instant::now();
                    if now >= until {
                        st.sleeping = false;
                        return Err(());
                    }
                    st = match self.wake.wait_timeout(st, until - now) {
                        Ok((guard, _)) => guard,
                        Err(poisoned) => poisoned.into_inner().0,
                    };
                }
            }
            st.sleeping = false;
        }
    }
}

/// A thread's hold on its pool. User code never panics out to the thread (closures, their
/// outputs, payloads and captures are all dropped under `catch_unwind`); if the pool's own
/// code does, `drop` runs as the thread unwinds and hands what it held back to the pool
/// (`Inner::thread_panicked`), so no closure is lost and no slot leaks.
struct Guard {
    inner: Arc<Inner>,
    parker: Arc<ThreadParker>,
    /// The closure to run next.
    next: Option<Running>,
    /// The closure being run, until the pool counted it.
    current: Option<Running>,
    /// A closure was counted as ended but not yet published (`Inner::publish_ended`).
    unpublished: bool,
    /// Set when the thread ends normally (it is already counted out).
    exited: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.exited {
            let (next, current) = (self.next.take(), self.current.take());
            self.inner.thread_panicked(&self.parker, next, current);
        }
        if self.unpublished {
            // Its handle already has its outcome (set before anything that can panic).
            self.inner.publish_ended(1);
        }
    }
}

/// The thread's life.
pub(crate) fn run(inner: Arc<Inner>, parker: Arc<ThreadParker>) {
    let mut guard = Guard {
        inner,
        parker,
        next: None,
        current: None,
        unpublished: false,
        exited: false,
    };
    let (inner, parker) = (guard.inner.clone(), guard.parker.clone());
    loop {
        let running = match guard.next.take() {
            Some(running) => running,
            None => match wait_for_job(&inner, &parker) {
                Some(running) => running,
                None => {
                    guard.exited = true;
                    return;
                }
            },
        };
        let running = guard.current.insert(running);
        let outcome = running.job.run(inner.settings.on_panic.as_ref());
        let after = inner.finish(&parker, running, outcome);
        let done = guard.current.take();
        guard.unpublished = true;
        // What the thread holds next is in the guard before any more code runs.
        match after {
            AfterRun::Run(running) => guard.next = Some(running),
            AfterRun::Idle => {}
            AfterRun::Exit => guard.exited = true,
        }
        if let Some(done) = done {
            done.job.publish();
            // Maybe with the closure's output: `Closure`'s `Drop` catches a panic in it.
            drop(done);
        }
        guard.unpublished = false;
        inner.publish_ended(1);
        if guard.exited {
            return;
        }
    }
}

fn wait_for_job(inner: &Arc<Inner>, parker: &Arc<ThreadParker>) -> Option<Running> {
    // An idle timeout too long to represent (`Duration::MAX`) means "never retire".
    let mut until = if inner.idle_timer_needed() {
        Instant::now().checked_add(inner.settings.idle_timeout)
    } else {
        None
    };
    loop {
        match parker.wait(until) {
            Ok(job) => return job,
            Err(()) => match inner.idle_timeout(parker) {
                IdleDecision::Retire => return None,
                IdleDecision::Stay | IdleDecision::TaskArrived => until = None,
            },
        }
    }
}
