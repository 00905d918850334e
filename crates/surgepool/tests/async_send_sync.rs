//! Compile-time checks of every public type's auto traits, in the style of tokio's
//! `tests/async_send_sync.rs`: a wrong bound here is a compile error, not a test failure.
#![allow(
    dead_code,
    unreachable_code,
    unused_variables,
    clippy::diverging_sub_expression
)]

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;

use surgepool::limit::{Limiter, LimiterStats, Permit};
use surgepool::{
    BlockingHandle, BlockingPool, BlockingPoolBuilder, BuildError, LatencySummary, Limit, Pool,
    PoolBuilder, ShutdownReport, Snapshot, SubmitError, TaskError, TaskHandle,
};

fn require_send<T: Send>(_: &T) {}
fn require_sync<T: Sync>(_: &T) {}
fn require_unpin<T: Unpin>(_: &T) {}

/// `AmbiguousIfSend<A>` has an impl for every `T` and a second one for `T: Send`: naming its
/// method is ambiguous (a compile error) exactly when `T: Send`. This is how tokio asserts
/// that a type is *not* `Send`.
trait AmbiguousIfSend<A> {
    fn some_item(&self) {}
}
impl<T: ?Sized> AmbiguousIfSend<()> for T {}
impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}

trait AmbiguousIfSync<A> {
    fn some_item(&self) {}
}
impl<T: ?Sized> AmbiguousIfSync<()> for T {}
impl<T: ?Sized + Sync> AmbiguousIfSync<u8> for T {}

macro_rules! assert_value {
    ($type:ty: Send & Sync & Unpin) => {
        #[allow(unreachable_code)]
        #[allow(unused_variables)]
        const _: fn() = || {
            let f: $type = todo!();
            require_send(&f);
            require_sync(&f);
            require_unpin(&f);
        };
    };
    ($type:ty: !Send & !Sync & Unpin) => {
        #[allow(unreachable_code)]
        #[allow(unused_variables)]
        const _: fn() = || {
            let f: $type = todo!();
            AmbiguousIfSend::some_item(&f);
            AmbiguousIfSync::some_item(&f);
            require_unpin(&f);
        };
    };
    ($type:ty: Send & !Sync & Unpin) => {
        #[allow(unreachable_code)]
        #[allow(unused_variables)]
        const _: fn() = || {
            let f: $type = todo!();
            require_send(&f);
            AmbiguousIfSync::some_item(&f);
            require_unpin(&f);
        };
    };
}

/// A future that is `Send` but not `Sync` (like most futures holding a `Cell`).
type SendNotSync = std::future::Ready<Cell<u8>>;
/// A future that is neither.
type NotSend = std::future::Ready<Rc<u8>>;
type Job = std::future::Ready<u8>;
type Closure = fn() -> u8;

// The pools and their builders.
assert_value!(Pool: Send & Sync & Unpin);
assert_value!(PoolBuilder: Send & Sync & Unpin);
assert_value!(BlockingPool: Send & Sync & Unpin);
assert_value!(BlockingPoolBuilder: Send & Sync & Unpin);

// Handles: Send + Sync + Unpin for any Send output, even one that is not Sync (the output is
// only ever moved out, never shared).
assert_value!(TaskHandle<u8>: Send & Sync & Unpin);
assert_value!(TaskHandle<Cell<u8>>: Send & Sync & Unpin);
assert_value!(BlockingHandle<u8>: Send & Sync & Unpin);
assert_value!(BlockingHandle<Cell<u8>>: Send & Sync & Unpin);

// Limits.
assert_value!(Limit: Send & Sync & Unpin);
assert_value!(Limiter: Send & Sync & Unpin);
assert_value!(Permit: Send & Sync & Unpin);
assert_value!(LimiterStats: Send & Sync & Unpin);

// Errors: SubmitError<F> is Send / Sync exactly when F is.
assert_value!(SubmitError<Job>: Send & Sync & Unpin);
assert_value!(SubmitError<Closure>: Send & Sync & Unpin);
assert_value!(SubmitError<SendNotSync>: Send & !Sync & Unpin);
assert_value!(SubmitError<NotSend>: !Send & !Sync & Unpin);
assert_value!(TaskError: Send & Sync & Unpin);
assert_value!(BuildError: Send & Sync & Unpin);

// Reports.
assert_value!(Snapshot: Send & Sync & Unpin);
assert_value!(ShutdownReport: Send & Sync & Unpin);
assert_value!(LatencySummary: Send & Sync & Unpin);

fn require_clone_debug<T: Clone + std::fmt::Debug>() {}
fn require_error<T: std::error::Error + Send + Sync + 'static>() {}
fn require_future<F: Future<Output = O> + Send, O>() {}
fn require_default<T: Default>() {}

/// The traits API.md promises beyond the auto traits.
#[test]
fn promised_traits() {
    require_clone_debug::<Pool>();
    require_clone_debug::<BlockingPool>();
    require_clone_debug::<PoolBuilder>();
    require_clone_debug::<BlockingPoolBuilder>();
    require_clone_debug::<Limit>();
    require_clone_debug::<Limiter>();
    require_clone_debug::<TaskError>();
    require_clone_debug::<BuildError>();
    require_clone_debug::<Snapshot>();
    require_clone_debug::<ShutdownReport>();
    require_clone_debug::<LatencySummary>();
    require_default::<PoolBuilder>();
    require_default::<BlockingPoolBuilder>();
    require_default::<Limit>();
    // SubmitError is an Error (and Debug) without F: Debug: futures and closures rarely are.
    require_error::<SubmitError<Job>>();
    require_error::<SubmitError<Closure>>();
    require_error::<TaskError>();
    require_error::<BuildError>();
    require_future::<TaskHandle<u8>, Result<u8, TaskError>>();
    require_future::<BlockingHandle<u8>, Result<u8, TaskError>>();
}

/// The futures the pools' async methods return are `Send`, so they can be awaited inside a
/// spawned task.
#[allow(unreachable_code, unused_variables, clippy::diverging_sub_expression)]
fn pool_futures_are_send() {
    let pool: Pool = todo!();
    let fut: Job = todo!();
    require_send(&pool.submit(fut));
    let fut: Job = todo!();
    require_send(&pool.submit_timeout(fut, std::time::Duration::ZERO));
    require_send(&pool.shutdown());
    require_send(&pool.shutdown_timeout(std::time::Duration::ZERO));
    let limiter: Limiter = todo!();
    require_send(&limiter.acquire());
    require_send(&limiter.acquire_timeout(std::time::Duration::ZERO));
}
