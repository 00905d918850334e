//! A worker thread: runs one closure at a time, then the next queued one, or parks on its
//! own condvar until a closure is handed to it, its idle timeout passes, or the pool closes.

use tokio::time::Instant;

use super::inner::{AfterRun, IdleDecision, Inner, Running};
use crate::sync::{lock, Arc, Condvar, Mutex};

pub(crate) struct ThreadParker {
    state: Mutex<ParkState>,
    wake: Condvar,
}

#[derive(Default)]
struct ParkState {
    job: Option<Running>,
    exit: bool,
}

impl ThreadParker {
    pub(crate) fn new() -> ThreadParker {
        ThreadParker {
            state: Mutex::new(ParkState::default()),
            wake: Condvar::new(),
        }
    }

    pub(crate) fn give(&self, running: Running) {
        lock(&self.state).job = Some(running);
        self.wake.notify_one();
    }

    pub(crate) fn take(&self) -> Option<Running> {
        lock(&self.state).job.take()
    }

    pub(crate) fn exit(&self) {
        lock(&self.state).exit = true;
        self.wake.notify_one();
    }

    /// Waits for a job until `until`; `Err(())` when the time ran out.
    fn wait(&self, until: Option<Instant>) -> Result<Option<Running>, ()> {
        let mut st = lock(&self.state);
        loop {
            if let Some(job) = st.job.take() {
                return Ok(Some(job));
            }
            if st.exit {
                return Ok(None);
            }
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
                        return Err(());
                    }
                    st = match self.wake.wait_timeout(st, until - now) {
                        Ok((guard, _)) => guard,
                        Err(poisoned) => poisoned.into_inner().0,
                    };
                }
            }
        }
    }
}

/// The thread's life.
pub(crate) fn run(inner: Arc<Inner>, parker: Arc<ThreadParker>) {
    let mut next: Option<Running> = None;
    loop {
        let running = match next.take() {
            Some(running) => running,
            None => match wait_for_job(&inner, &parker) {
                Some(running) => running,
                None => return,
            },
        };
        let outcome = running.job.run(inner.settings.on_panic.as_ref());
        let after = inner.finish(&parker, &running, outcome);
        running.job.publish();
        drop(running);
        match after {
            AfterRun::Run(running) => next = Some(running),
            AfterRun::Idle => {}
            AfterRun::Exit => return,
        }
    }
}

fn wait_for_job(inner: &Arc<Inner>, parker: &Arc<ThreadParker>) -> Option<Running> {
    let mut until = inner
        .idle_timer_needed()
        .then(|| Instant::now() + inner.settings.idle_timeout);
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
