//! A pool whose runtime shuts down under it: every task it held ends as cancelled (their
//! handles resolve instead of hanging), it is counted, and the pool closes.

use std::future::pending;
use std::time::Duration;

use surgepool::{Limit, Pool, SubmitError};

mod support;
use support::assert_identities;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn tasks_of_a_pool_whose_runtime_shut_down_end_cancelled() {
    let rt = runtime();
    let (pool, running, queued) = rt.block_on(async {
        let pool = Pool::builder()
            .limit(Limit::fixed(1))
            .queue_capacity(4)
            .build()
            .unwrap();
        let running = pool.try_submit(pending::<()>()).unwrap();
        let queued = pool.try_submit(pending::<()>()).unwrap();
        pool.try_spawn(pending()).unwrap();
        // Wait until the first task is on its worker (explicit, not a sleep).
        while pool.snapshot().running < 1 {
            tokio::task::yield_now().await;
        }
        (pool, running, queued)
    });
    assert_eq!(pool.snapshot().queued, 2);
    // The runtime goes away with the pool still holding three tasks.
    rt.shutdown_timeout(Duration::from_secs(10));

    let other = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    other.block_on(async {
        // A generous bound, only so that a regression fails instead of hanging CI.
        let limit = Duration::from_secs(30);
        let running = tokio::time::timeout(limit, running)
            .await
            .expect("resolves");
        let queued = tokio::time::timeout(limit, queued).await.expect("resolves");
        assert!(running.unwrap_err().is_cancelled());
        assert!(queued.unwrap_err().is_cancelled());
        let s = pool.snapshot();
        assert_identities(&s);
        assert_eq!((s.running, s.queued, s.cancelled), (0, 0, 3), "{s:?}");
        assert!(pool.is_closed());
        assert!(matches!(
            pool.try_submit(async {}),
            Err(SubmitError::Closed(_))
        ));
        let report = tokio::time::timeout(limit, pool.shutdown())
            .await
            .expect("drained");
        assert!(!report.timed_out);
    });
}

#[test]
fn submitting_to_a_pool_whose_runtime_is_gone_ends_the_task_not_hangs() {
    let rt = runtime();
    let pool = rt.block_on(async { Pool::builder().limit(Limit::fixed(2)).build().unwrap() });
    rt.shutdown_timeout(Duration::from_secs(10));
    let other = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    other.block_on(async {
        // Admitted (the pool cannot know yet); its worker cannot start on the dead runtime.
        let handle = match pool.try_submit(async { 1 }) {
            Ok(handle) => handle,
            Err(e) => panic!("{e}"),
        };
        let limit = Duration::from_secs(30);
        let result = tokio::time::timeout(limit, handle).await.expect("resolves");
        assert!(result.unwrap_err().is_cancelled());
        let s = pool.snapshot();
        assert_identities(&s);
        assert_eq!((s.running, s.queued, s.cancelled), (0, 0, 1), "{s:?}");
        assert!(pool.is_closed(), "nothing can run its tasks any more");
    });
}

/// Futures whose `Drop` panics, dropped by the runtime's shutdown (a detached one inline in
/// its worker's frame, one with a handle in its task): isolated, counted, and resolved.
#[test]
fn futures_whose_drop_panics_are_isolated_when_the_runtime_drops_them() {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("bomb");
        }
    }
    // The expected panics are caught; keep their messages out of the output.
    std::panic::set_hook(Box::new(|_| {}));
    let rt = runtime();
    let (pool, handle) = rt.block_on(async {
        let pool = Pool::builder().limit(Limit::fixed(2)).build().unwrap();
        let bomb = Bomb;
        pool.try_spawn(async move {
            let _bomb = bomb;
            pending::<()>().await;
        })
        .unwrap();
        let bomb = Bomb;
        let handle = pool
            .try_submit(async move {
                let _bomb = bomb;
                pending::<()>().await;
            })
            .unwrap();
        while pool.snapshot().running < 2 {
            tokio::task::yield_now().await;
        }
        (pool, handle)
    });
    rt.shutdown_timeout(Duration::from_secs(10));
    let other = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    other.block_on(async {
        let limit = Duration::from_secs(30);
        let result = tokio::time::timeout(limit, handle).await.expect("resolves");
        assert!(result.unwrap_err().is_cancelled());
        let s = pool.snapshot();
        assert_identities(&s);
        assert_eq!((s.running, s.cancelled, s.workers), (0, 2, 0), "{s:?}");
    });
    let _ = std::panic::take_hook();
}
