//! The batcher's shared state: the queue, the running flushes' waiters, the counters, and
//! `pump`, which starts a flush whenever one is ready and the limit has room.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{oneshot, Notify};
use tokio::task::AbortHandle;

mod shutdown;

use super::error::{BatchError, FlushError};
use super::snapshot::{BatchSnapshot, Histograms};
use super::OnFailure;
use crate::clock::{Clock, Stamp};
use crate::error::SubmitError;
use crate::limit::{Limiter, Permit};
use crate::sync::{lock, Arc, Mutex};

/// The flush, type-erased: one boxed future per call.
pub(crate) type FlushFuture<R> = Pin<Box<dyn Future<Output = Result<Vec<R>, FlushError>> + Send>>;
pub(crate) type FlushFn<T, R> = dyn Fn(Vec<T>) -> FlushFuture<R> + Send + Sync;

/// Where an item's outcome goes, and when it was accepted.
pub(crate) struct Waiter<R> {
    pub(crate) tx: oneshot::Sender<Result<R, BatchError>>,
    pub(crate) accepted_at: Stamp,
}

struct Entry<T, R> {
    item: T,
    waiter: Waiter<R>,
}

/// A flush that is running: the waiters of its items, by position in its batch. A waiter
/// is taken out when its item's outcome is known; shutdown's deadline takes the rest.
struct Running<R> {
    waiters: Vec<Option<Waiter<R>>>,
    abort: Option<AbortHandle>,
}

pub(crate) struct Settings {
    pub(crate) max_batch_size: usize,
    pub(crate) max_linger: Option<Duration>,
    pub(crate) queue_capacity: usize,
    pub(crate) queue_timeout: Option<Duration>,
    pub(crate) on_failure: OnFailure,
}

pub(crate) struct Inner<T, R> {
    pub(crate) flush: Box<FlushFn<T, R>>,
    /// `T::clone`, when bisection is on: a failed batch is retried in halves, and the flush
    /// consumed the first copy.
    pub(crate) cloner: Option<fn(&T) -> T>,
    pub(crate) limiter: Limiter,
    pub(crate) settings: Settings,
    pub(crate) clock: Clock,
    pub(crate) runtime: Handle,
    state: Mutex<State<T, R>>,
    /// Woken when items leave the queue (room for `submit`) or the batcher closes.
    room: Notify,
    /// Woken when a closed batcher has nothing left queued or in a flush.
    idle: Notify,
}

struct State<T, R> {
    queue: VecDeque<Entry<T, R>>,
    running: HashMap<u64, Running<R>>,
    next_flush: u64,
    closed: bool,
    /// A linger timer is armed (at most one: it is always for the oldest item).
    timer_armed: bool,
    submitted: u64,
    rejected: u64,
    accepted: u64,
    committed: u64,
    failed: u64,
    shed: u64,
    cancelled: u64,
    in_flush: u64,
    flushes: u64,
    failed_flushes: u64,
    bisections: u64,
    histograms: Histograms,
}

/// A flush that `pump` decided to start.
pub(crate) struct Start<T> {
    pub(crate) id: u64,
    pub(crate) items: Vec<T>,
    pub(crate) permit: Permit,
}

/// How one flush call ended, for [`Inner::finish_call`].
pub(crate) enum CallEnd<R> {
    Committed(Vec<R>),
    Failed(BatchError),
    /// Failed, and the batch will be retried in halves: its items stay in the flush.
    Bisected,
}

/// Drops user values (items, outputs) where their `Drop` cannot unwind into the batcher.
pub(crate) fn drop_quietly<X>(value: X) {
    let _ = catch_unwind(AssertUnwindSafe(move || drop(value)));
}

impl<T: Send + 'static, R: Send + 'static> Inner<T, R> {
    pub(crate) fn new(
        flush: Box<FlushFn<T, R>>,
        cloner: Option<fn(&T) -> T>,
        limiter: Limiter,
        settings: Settings,
        runtime: Handle,
    ) -> Inner<T, R> {
        Inner {
            flush,
            cloner,
            limiter,
            settings,
            clock: Clock::new(),
            runtime,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                running: HashMap::new(),
                next_flush: 0,
                closed: false,
                timer_armed: false,
                submitted: 0,
                rejected: 0,
                accepted: 0,
                committed: 0,
                failed: 0,
                shed: 0,
                cancelled: 0,
                in_flush: 0,
                flushes: 0,
                failed_flushes: 0,
                bisections: 0,
                histograms: Histograms::new(),
            }),
            room: Notify::new(),
            idle: Notify::new(),
        }
    }

    /// Offers an item. `count_full` is false while `submit` still waits for room: a full
    /// queue is then not (yet) a rejection.
    pub(crate) fn offer(
        self: &Arc<Self>,
        item: T,
        count_full: bool,
    ) -> Result<oneshot::Receiver<Result<R, BatchError>>, SubmitError<T>> {
        let mut shed = Vec::new();
        let outcome = {
            let mut st = lock(&self.state);
            let now = self.clock.now();
            if st.closed {
                st.submitted += 1;
                st.rejected += 1;
                Err(SubmitError::Closed(item))
            } else {
                if st.queue.len() >= self.settings.queue_capacity {
                    // Expired items would be shed at the next flush anyway: make room now.
                    self.shed_expired(&mut st, now, &mut shed);
                }
                if st.queue.len() >= self.settings.queue_capacity {
                    if count_full {
                        st.submitted += 1;
                        st.rejected += 1;
                    }
                    Err(SubmitError::Full(item))
                } else {
                    let (tx, rx) = oneshot::channel();
                    let waiter = Waiter {
                        tx,
                        accepted_at: now,
                    };
                    st.queue.push_back(Entry { item, waiter });
                    st.submitted += 1;
                    st.accepted += 1;
                    Ok(rx)
                }
            }
        };
        self.send_errors(shed, BatchError::shed);
        if outcome.is_ok() {
            self.pump();
        }
        outcome
    }

    /// Counts a rejection decided outside `offer` (a `submit_timeout` that ran out).
    pub(crate) fn count_rejected(&self) {
        let mut st = lock(&self.state);
        st.submitted += 1;
        st.rejected += 1;
    }

    /// The future `submit` waits on for room; create it before offering (no lost wake-up).
    pub(crate) fn room(&self) -> &Notify {
        &self.room
    }

    /// Starts every flush that is ready and fits under the limit, and arms the linger timer
    /// when items wait for company. Called after each accepted item, each finished flush,
    /// each timer, and on close.
    pub(crate) fn pump(self: &Arc<Self>) {
        let mut starts = Vec::new();
        let mut shed = Vec::new();
        let mut timer = None;
        let took = {
            let mut st = lock(&self.state);
            let now = self.clock.now();
            self.shed_expired(&mut st, now, &mut shed);
            let before = st.queue.len();
            while let Some(oldest) = st.queue.front() {
                if !self.is_ready(&st, oldest.waiter.accepted_at, now) {
                    if !st.timer_armed {
                        if let Some(linger) = self.settings.max_linger {
                            let deadline = self.clock.instant(oldest.waiter.accepted_at);
                            // A linger too long to add is no timer: only a full batch or
                            // close flushes then.
                            if let Some(at) = deadline.checked_add(linger) {
                                st.timer_armed = true;
                                timer = Some(at);
                            }
                        }
                    }
                    break;
                }
                let Some(permit) = self.limiter.try_acquire() else {
                    break;
                };
                let n = st.queue.len().min(self.settings.max_batch_size);
                let mut items = Vec::with_capacity(n);
                let mut waiters = Vec::with_capacity(n);
                for entry in st.queue.drain(..n) {
                    items.push(entry.item);
                    waiters.push(Some(entry.waiter));
                }
                let id = st.next_flush;
                st.next_flush += 1;
                st.in_flush += n as u64;
                st.running.insert(
                    id,
                    Running {
                        waiters,
                        abort: None,
                    },
                );
                starts.push(Start { id, items, permit });
            }
            before != st.queue.len()
        };
        if took {
            self.room.notify_waiters();
        }
        self.send_errors(shed, BatchError::shed);
        for start in starts {
            let id = start.id;
            let guard = super::flush::EndGuard {
                inner: self.clone(),
                id,
            };
            let task = self.runtime.spawn(super::flush::run(guard, start));
            let mut st = lock(&self.state);
            if let Some(running) = st.running.get_mut(&id) {
                running.abort = Some(task.abort_handle());
            }
        }
        if let Some(at) = timer {
            let inner = self.clone();
            self.runtime.spawn(async move {
                tokio::time::sleep_until(at).await;
                lock(&inner.state).timer_armed = false;
                inner.pump();
            });
        }
    }

    /// A batch is ready when nobody asked to wait (smart batching: whatever is queued goes
    /// as soon as a flusher is free), when it is full, when its oldest item has lingered
    /// long enough, or when the batcher is closing.
    fn is_ready(&self, st: &State<T, R>, oldest: Stamp, now: Stamp) -> bool {
        match self.settings.max_linger {
            None => true,
            Some(linger) => {
                st.closed
                    || st.queue.len() >= self.settings.max_batch_size
                    || u128::from(now.nanos_since(oldest)) >= linger.as_nanos()
            }
        }
    }

    fn shed_expired(&self, st: &mut State<T, R>, now: Stamp, out: &mut Vec<Entry<T, R>>) {
        let Some(timeout) = self.settings.queue_timeout else {
            return;
        };
        while let Some(front) = st.queue.front() {
            if u128::from(now.nanos_since(front.waiter.accepted_at)) <= timeout.as_nanos() {
                break;
            }
            if let Some(entry) = st.queue.pop_front() {
                st.shed += 1;
                out.push(entry);
            }
        }
        self.notify_if_idle(st);
    }

    /// Sends `error()` to each entry's receipt, outside the lock (items and receipts are
    /// user values whose `Drop` may panic).
    fn send_errors(&self, entries: Vec<Entry<T, R>>, error: fn() -> BatchError) {
        for entry in entries {
            drop_quietly(entry.item);
            let _ = entry.waiter.tx.send(Err(error()));
        }
    }

    /// Records the end of one flush call over the items at `offset..offset + n` of flush
    /// `id`, and resolves them unless the call is being bisected.
    pub(crate) fn finish_call(&self, id: u64, offset: usize, n: usize, took: u64, end: CallEnd<R>) {
        let mut resolved = Vec::new();
        let failed = !matches!(end, CallEnd::Committed(_));
        {
            let mut st = lock(&self.state);
            let now = self.clock.now();
            st.flushes += 1;
            st.histograms.record_batch(n);
            st.histograms.record_flush(took);
            if failed {
                st.failed_flushes += 1;
            }
            if matches!(end, CallEnd::Bisected) {
                st.bisections += 1;
                return;
            }
            let st = &mut *st;
            // Shutdown's deadline may have taken this flush's waiters already: then the
            // items were counted as cancelled, and the outputs go nowhere.
            if let Some(running) = st.running.get_mut(&id) {
                let slots = running.waiters.iter_mut().skip(offset).take(n);
                match end {
                    CallEnd::Committed(outputs) => {
                        for (slot, output) in slots.zip(outputs) {
                            if let Some(w) = slot.take() {
                                st.committed += 1;
                                st.in_flush -= 1;
                                st.histograms.record_item(now.nanos_since(w.accepted_at));
                                resolved.push((w.tx, Ok(output)));
                            }
                        }
                    }
                    CallEnd::Failed(error) => {
                        for slot in slots {
                            if let Some(w) = slot.take() {
                                st.failed += 1;
                                st.in_flush -= 1;
                                st.histograms.record_item(now.nanos_since(w.accepted_at));
                                resolved.push((w.tx, Err(error.clone())));
                            }
                        }
                    }
                    CallEnd::Bisected => {}
                }
            }
            self.notify_if_idle(st);
        }
        for (tx, result) in resolved {
            if let Err(unsent) = tx.send(result) {
                // The receipt was dropped: the output is the caller's to drop, safely.
                drop_quietly(unsent);
            }
        }
    }

    /// A flush task ended (normally, aborted, or dropped with its runtime): forget it, and
    /// cancel whatever of its items has no outcome yet, so nothing is ever silently lost.
    pub(crate) fn end_flush(&self, id: u64) {
        let leftover = {
            let mut st = lock(&self.state);
            let running = st.running.remove(&id);
            let leftover = running.map(|r| self.cancel_waiters(&mut st, r.waiters));
            self.notify_if_idle(&mut st);
            leftover
        };
        for tx in leftover.into_iter().flatten() {
            let _ = tx.send(Err(BatchError::cancelled()));
        }
    }

    fn cancel_waiters(
        &self,
        st: &mut State<T, R>,
        waiters: Vec<Option<Waiter<R>>>,
    ) -> Vec<oneshot::Sender<Result<R, BatchError>>> {
        let mut out = Vec::new();
        for w in waiters.into_iter().flatten() {
            st.cancelled += 1;
            st.in_flush -= 1;
            out.push(w.tx);
        }
        out
    }

    fn notify_if_idle(&self, st: &mut State<T, R>) {
        if st.closed && st.queue.is_empty() && st.in_flush == 0 {
            self.idle.notify_waiters();
        }
    }

    pub(crate) fn snapshot(&self) -> BatchSnapshot {
        let st = lock(&self.state);
        let mut s = BatchSnapshot {
            submitted: st.submitted,
            rejected: st.rejected,
            accepted: st.accepted,
            committed: st.committed,
            failed: st.failed,
            shed: st.shed,
            cancelled: st.cancelled,
            queued: st.queue.len() as u64,
            in_flush: st.in_flush,
            flushes: st.flushes,
            failed_flushes: st.failed_flushes,
            bisections: st.bisections,
            flushes_running: st.running.len() as u64,
            limit: self.limiter.limit() as u64,
            ..BatchSnapshot::default()
        };
        st.histograms.fill(&mut s);
        s
    }
}
