//! `batch_ops`: an arbitrary sequence of operations on a `Batcher` (try_submit of good,
//! poison, panicking and wrong-count items, releasing flushes, dropping and awaiting
//! receipts, close, shutdown_timeout), under `OnFailure::FailBatch` or `OnFailure::Bisect`,
//! checked against a model.
//!
//! Which items share a batch depends on when flushers free up, so the model does not guess
//! it: it reads it. Every flush call logs its batch and what it did (commit, error, wrong
//! count, panic in the call or in the poll) in the same poll as the batcher records the
//! call's end (current-thread runtime), and the model checks that log and derives from it
//! every item's outcome:
//! * each call is a non-empty run of items in submission order, at most `max_batch_size`,
//!   made of items never flushed before, or exactly one half of a bisected call;
//! * a call with a panic item fails its items (`is_panic`), one with a wrong-count item fails
//!   them (`is_output_count`), one with a poison item fails them (`is_flush_error`) unless
//!   bisection splits it, and any other commits them with output `2 × id`;
//! * an item with no outcome from the log was cancelled (shutdown deadline) or shed.
//!
//! Every receipt resolves exactly once with that outcome; after every step the snapshot's
//! identities hold and its flush counters equal the log's. Flushes may wait on a gate that
//! only the input opens, and every wait is bounded in paused virtual time, so no input can
//! hang the target.
#![no_main]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use surgepool::batch::{BatchError, Batcher, OnFailure, Receipt};
use surgepool::{Limit, SubmitError};
use tokio::sync::Semaphore;
use tokio::time::timeout;

/// Longer than any wait the input can ask for: a wait still pending after this (virtual)
/// time is pending for ever, because flushes end only when the input opens their gate.
const BOUND: Duration = Duration::from_secs(7200);

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Good,
    /// The flush returns an error for any batch holding it.
    Poison,
    /// The flush panics when called with it (before its future exists).
    PanicInCall,
    /// The flush's future panics when polled.
    PanicInPoll,
    /// The flush returns one output too many.
    TooMany,
    /// The flush returns one output too few.
    TooFew,
}

#[derive(Clone, Debug)]
struct Item {
    id: usize,
    kind: Kind,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Submit(Kind),
    SubmitTimeout(Kind, u8),
    /// Opens the gate for this many flush calls.
    Release(u8),
    DropReceipt(u8),
    Await(u8),
    Close,
    ShutdownTimeout(u8),
    Advance(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    bisect: bool,
    gated: bool,
    limit: u8,
    max_batch: u8,
    queue: u8,
    linger: Option<u8>,
    queue_timeout: Option<u8>,
    ops: Vec<Op>,
}

/// What a flush call did, as the flush itself logged it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallResult {
    Committed,
    Poison,
    WrongCount,
    Panic,
}

#[derive(Debug)]
struct Call {
    ids: Vec<usize>,
    result: CallResult,
}

/// What an item's receipt must say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Committed,
    FlushError,
    OutputCount,
    Panic,
    /// Cancelled or (with a queue timeout) shed: the item never reached an ending call.
    NoCall,
    /// In a call (or a bisection) that did not end: cancelled at the deadline.
    Cancelled,
}

fn verdict(result: CallResult) -> Expect {
    match result {
        CallResult::Committed => Expect::Committed,
        CallResult::Poison => Expect::FlushError,
        CallResult::WrongCount => Expect::OutputCount,
        CallResult::Panic => Expect::Panic,
    }
}

fn batch_result(items: &[Item]) -> CallResult {
    let has = |k: &[Kind]| items.iter().any(|i| k.contains(&i.kind));
    if has(&[Kind::PanicInCall, Kind::PanicInPoll]) {
        CallResult::Panic
    } else if has(&[Kind::TooMany, Kind::TooFew]) {
        CallResult::WrongCount
    } else if has(&[Kind::Poison]) {
        CallResult::Poison
    } else {
        CallResult::Committed
    }
}

type Log = Arc<Mutex<Vec<Call>>>;

fn batcher(input: &Input, log: &Log, gate: &Arc<Semaphore>) -> Option<Batcher<Item, usize>> {
    let (log, gate, gated) = (log.clone(), gate.clone(), input.gated);
    let flush = move |items: Vec<Item>| {
        let (log, gate) = (log.clone(), gate.clone());
        let result = batch_result(&items);
        let ids: Vec<usize> = items.iter().map(|i| i.id).collect();
        if items.iter().any(|i| i.kind == Kind::PanicInCall) {
            log.lock().unwrap().push(Call { ids, result });
            common::intended_panic();
        }
        async move {
            if gated {
                // A closed semaphore (end of input) opens every gate too.
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
            } else {
                tokio::task::yield_now().await;
            }
            log.lock().unwrap().push(Call { ids, result });
            match result {
                CallResult::Panic => common::intended_panic(),
                CallResult::Poison => Err("poison"),
                CallResult::WrongCount => {
                    let n = items.len();
                    let wrong = if items.iter().any(|i| i.kind == Kind::TooMany) || n == 0 {
                        n + 1
                    } else {
                        n - 1
                    };
                    Ok((0..wrong).collect())
                }
                CallResult::Committed => Ok(items.iter().map(|i| i.id * 2).collect()),
            }
        }
    };
    let mut builder = Batcher::builder(flush)
        .limit(Limit::fixed(usize::from(input.limit % 3) + 1))
        .max_batch_size(usize::from(input.max_batch % 6))
        .queue_capacity(usize::from(input.queue % 8));
    if let Some(ms) = input.linger {
        builder = builder.max_linger(Duration::from_millis(u64::from(ms)));
    }
    if let Some(ms) = input.queue_timeout {
        builder = builder.queue_timeout(Duration::from_millis(u64::from(ms)));
    }
    builder = builder.on_failure(if input.bisect {
        OnFailure::Bisect
    } else {
        OnFailure::FailBatch
    });
    // max_batch_size 0 or queue_capacity 0 may be refused: a clear error, nothing to drive.
    builder.build().ok()
}

/// The model: the outcome each item must get, derived from the flush log.
struct Model {
    bisect: bool,
    max_batch: usize,
    items: usize,
    /// Items that ended in a call, and how.
    ended: HashMap<usize, Expect>,
    /// Items that are or were in a call without an outcome yet (bisected, or running).
    called: HashMap<usize, ()>,
    /// Halves a bisected call still owes.
    owed: Vec<Vec<usize>>,
    calls_read: usize,
    /// A shutdown's deadline passed: only then may items be cancelled.
    timed_out: bool,
    /// A queue timeout is set: only then may items be shed.
    shed_ok: bool,
    flushes: u64,
    failed_flushes: u64,
    bisections: u64,
}

impl Model {
    /// Reads the calls logged since the last read and checks each against the contract.
    fn read(&mut self, log: &Log) {
        let log = log.lock().unwrap();
        for call in &log[self.calls_read..] {
            let ids = &call.ids;
            assert!(!ids.is_empty(), "an empty flush: {call:?}");
            assert!(ids.len() <= self.max_batch, "batch over max: {call:?}");
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "out of order: {call:?}"
            );
            assert!(
                ids.iter().all(|id| *id < self.items),
                "unknown item: {call:?}"
            );
            if let Some(i) = self.owed.iter().position(|half| half == ids) {
                self.owed.swap_remove(i);
            } else {
                for id in ids {
                    assert!(
                        !self.called.contains_key(id),
                        "item {id} flushed twice: {call:?}"
                    );
                }
            }
            for id in ids {
                assert!(
                    !self.ended.contains_key(id),
                    "item {id} flushed after its end"
                );
                self.called.insert(*id, ());
            }
            self.flushes += 1;
            if call.result != CallResult::Committed {
                self.failed_flushes += 1;
            }
            if call.result == CallResult::Poison && self.bisect && ids.len() > 1 {
                self.bisections += 1;
                let (left, right) = ids.split_at(ids.len() / 2);
                self.owed.push(left.to_vec());
                self.owed.push(right.to_vec());
            } else {
                for id in ids {
                    self.ended.insert(*id, verdict(call.result));
                }
            }
        }
        self.calls_read = log.len();
    }

    fn expect(&self, id: usize) -> Expect {
        match self.ended.get(&id) {
            Some(e) => *e,
            None if self.called.contains_key(&id) => Expect::Cancelled,
            None => Expect::NoCall,
        }
    }
}

fn check_receipt(model: &Model, id: usize, result: &Result<usize, BatchError>) {
    let expect = model.expect(id);
    let cancel_ok = model.timed_out;
    let shed_ok = model.shed_ok;
    let ok = match (expect, result) {
        (Expect::Committed, Ok(out)) => *out == id * 2,
        (Expect::FlushError, Err(e)) => e.is_flush_error(),
        (Expect::OutputCount, Err(e)) => e.is_output_count(),
        (Expect::Panic, Err(e)) => e.is_panic(),
        (Expect::Cancelled, Err(e)) => cancel_ok && e.is_cancelled(),
        (Expect::NoCall, Err(e)) => (cancel_ok && e.is_cancelled()) || (shed_ok && e.is_shed()),
        _ => false,
    };
    assert!(ok, "item {id}: expected {expect:?}, got {result:?}");
}

fn check_snapshot(model: &Model, batcher: &Batcher<Item, usize>) {
    let s = batcher.snapshot();
    assert_eq!(s.submitted, s.accepted + s.rejected, "{s:?}");
    assert_eq!(
        s.accepted,
        s.committed + s.failed + s.shed + s.cancelled + s.queued + s.in_flush,
        "{s:?}"
    );
    assert_eq!(s.accepted as usize, model.items, "{s:?}");
    assert_eq!(s.flushes, model.flushes, "{s:?}");
    assert_eq!(s.failed_flushes, model.failed_flushes, "{s:?}");
    assert_eq!(s.bisections, model.bisections, "{s:?}");
    assert!(
        model.timed_out || s.cancelled == 0,
        "cancelled without a deadline: {s:?}"
    );
    assert!(
        model.shed_ok || s.shed == 0,
        "shed without a queue timeout: {s:?}"
    );
    // Only counted outcomes: the model's ended items are each committed or failed.
    let committed = model
        .ended
        .values()
        .filter(|e| **e == Expect::Committed)
        .count() as u64;
    assert_eq!(s.committed, committed, "{s:?}");
    assert_eq!(s.failed, model.ended.len() as u64 - committed, "{s:?}");
}

async fn settle() {
    // Paused time advances only once every task is idle: the batcher has done all it can.
    tokio::time::sleep(Duration::from_millis(1)).await;
}

async fn run(input: Input) {
    let log: Log = Arc::default();
    let gate = Arc::new(Semaphore::new(0));
    let Some(batcher) = batcher(&input, &log, &gate) else {
        return;
    };
    let capacity = usize::from(input.queue % 8);
    let mut model = Model {
        bisect: input.bisect,
        max_batch: usize::from(input.max_batch % 6),
        items: 0,
        ended: HashMap::new(),
        called: HashMap::new(),
        owed: Vec::new(),
        calls_read: 0,
        timed_out: false,
        shed_ok: input.queue_timeout.is_some(),
        flushes: 0,
        failed_flushes: 0,
        bisections: 0,
    };
    let mut closed = false;
    let mut receipts: Vec<(usize, Receipt<usize>)> = Vec::new();
    for op in input.ops.into_iter().take(64) {
        match op {
            Op::Submit(kind) | Op::SubmitTimeout(kind, _) => {
                let id = model.items;
                let item = Item { id, kind };
                let queued = batcher.snapshot().queued as usize;
                let result = match op {
                    Op::SubmitTimeout(_, ms) => {
                        let wait = Duration::from_millis(u64::from(ms));
                        timeout(BOUND, batcher.submit_timeout(item, wait))
                            .await
                            .expect("submit_timeout hung")
                    }
                    _ => batcher.try_submit(item),
                };
                match result {
                    Ok(receipt) => {
                        assert!(!closed, "accepted after close");
                        model.items += 1;
                        receipts.push((id, receipt));
                    }
                    Err(SubmitError::Closed(back)) => {
                        assert!(closed, "closed while open");
                        assert_eq!(back.id, id);
                    }
                    Err(SubmitError::Full(back)) => {
                        assert!(!closed);
                        assert!(queued >= capacity, "full with {queued} < {capacity} queued");
                        assert_eq!(back.id, id);
                    }
                    Err(SubmitError::Timeout(back)) => {
                        assert!(!closed);
                        assert_eq!(back.id, id);
                    }
                }
            }
            Op::Release(n) => gate.add_permits(usize::from(n % 8)),
            Op::DropReceipt(i) => {
                if !receipts.is_empty() {
                    let i = usize::from(i) % receipts.len();
                    drop(receipts.swap_remove(i));
                }
            }
            Op::Await(i) => {
                if !receipts.is_empty() {
                    let i = usize::from(i) % receipts.len();
                    let (id, receipt) = &mut receipts[i];
                    // A receipt still pending after the bound waits for a gate: leave it.
                    if let Ok(result) = timeout(Duration::from_millis(50), receipt).await {
                        let id = *id;
                        drop(receipts.swap_remove(i));
                        model.read(&log);
                        check_receipt(&model, id, &result);
                    }
                }
            }
            Op::Close => {
                batcher.close();
                closed = true;
            }
            Op::ShutdownTimeout(ms) => {
                closed = true;
                let grace = Duration::from_millis(u64::from(ms));
                let before = batcher.snapshot().cancelled;
                let report = timeout(BOUND, batcher.shutdown_timeout(grace))
                    .await
                    .expect("shutdown_timeout hung");
                model.timed_out |= report.timed_out;
                let s = batcher.snapshot();
                assert_eq!((s.queued, s.in_flush), (0, 0), "{report:?} {s:?}");
                assert_eq!(report.cancelled, s.cancelled - before, "{report:?} {s:?}");
                assert!(report.timed_out || report.cancelled == 0, "{report:?}");
            }
            Op::Advance(ms) => tokio::time::advance(Duration::from_millis(u64::from(ms))).await,
        }
        settle().await;
        model.read(&log);
        check_snapshot(&model, &batcher);
    }
    // The end: open every gate, drain, and check every receipt still held.
    gate.close();
    let report = timeout(BOUND, batcher.shutdown())
        .await
        .expect("shutdown hung");
    assert!(!report.timed_out);
    settle().await;
    model.read(&log);
    check_snapshot(&model, &batcher);
    let s = batcher.snapshot();
    assert_eq!(
        (s.queued, s.in_flush, s.flushes_running),
        (0, 0, 0),
        "{s:?}"
    );
    for (id, receipt) in receipts {
        let result = timeout(Duration::from_millis(1), receipt)
            .await
            .expect("a receipt unresolved after shutdown");
        check_receipt(&model, id, &result);
    }
}

fuzz_target!(|input: Input| common::run_paused(run(input)));
