//! [`Tracked`]: one request's work, wrapped so that however it ends, its outcome is counted.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use super::Recorder;
use crate::experiments::overload::change;
use crate::work::Work;

/// One request's work, wrapped so its outcome is always counted.
pub(crate) struct Tracked {
    work: Work,
    /// The work's future, made at the first poll: its service time is decided when the work
    /// starts (a slowdown hits work that starts after it), and a refused request never
    /// allocates one.
    running: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    guard: Guard,
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked")
            .field("guard", &self.guard)
            .finish()
    }
}

#[derive(Debug)]
struct Guard {
    recorder: Arc<Recorder>,
    intended: Instant,
    /// `false` while the strategy has not accepted the request (a refused future comes back
    /// and is dropped: that is a rejection, counted by the generator, not a shed).
    armed: bool,
    started: bool,
    /// The work runs at the slowdown's service time.
    slowed: bool,
    done: bool,
}

impl Tracked {
    /// Wraps `work` for the request that was due at `intended`. Armed: dropping it unfinished
    /// counts an outcome. Call [`Tracked::disarm`] on a future the strategy refused.
    pub(crate) fn new(recorder: Arc<Recorder>, intended: Instant, work: Work) -> Tracked {
        Tracked {
            work,
            running: None,
            guard: Guard {
                recorder,
                intended,
                armed: true,
                started: false,
                slowed: false,
                done: false,
            },
        }
    }

    /// The strategy refused this request: dropping it counts nothing.
    pub(crate) fn disarm(mut self) {
        self.guard.armed = false;
    }
}

impl Future for Tracked {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.guard.started = true;
        let guard = &mut this.guard;
        let running = this.running.get_or_insert_with(|| {
            let mut work = this.work;
            let slow_from = guard.recorder.slow_from.get().copied();
            let service = change::service_at(work.service, slow_from, Instant::now());
            guard.slowed = service != work.service;
            work.service = service;
            Box::pin(work.run())
        });
        match running.as_mut().poll(cx) {
            Poll::Ready(()) => {
                if !this.guard.done {
                    this.guard.done = true;
                    this.guard
                        .recorder
                        .completed(this.guard.intended, this.guard.slowed);
                }
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.armed || self.done {
            return;
        }
        let r = &self.recorder;
        let counter = if std::thread::panicking() {
            &r.failed
        } else if self.started || r.draining.load(Ordering::SeqCst) {
            &r.cancelled
        } else {
            &r.shed
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}
