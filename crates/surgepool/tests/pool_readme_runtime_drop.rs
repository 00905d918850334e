//! Issue 10, item 3: the README's usage, then dropping the runtime. `shutdown()` (or
//! `close()`) lets the idle workers go; the runtime's shutdown then drops their futures,
//! which must not count them out a second time. Nothing may panic anywhere (a panic in a
//! dropped worker is swallowed by tokio, so a panic hook counts them), and `workers` must
//! read 0.
//!
//! Alone in its file: the panic hook is process-wide.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use surgepool::{Limit, Pool};

mod support;
use support::assert_identities;

fn count_panics() -> Arc<AtomicUsize> {
    let panics = Arc::new(AtomicUsize::new(0));
    let seen = panics.clone();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("unexpected panic: {info}");
        seen.fetch_add(1, Ordering::SeqCst);
    }));
    panics
}

fn readme_then_drop_runtime(rt: tokio::runtime::Runtime, shutdown: bool) {
    let pool = rt.block_on(async {
        let pool = Pool::builder()
            .limit(Limit::fixed(4))
            .min_workers(2)
            .build()
            .unwrap();
        for _ in 0..3 {
            assert_eq!(pool.try_submit(async { 1 }).unwrap().await.unwrap(), 1);
        }
        if shutdown {
            pool.shutdown().await;
        } else {
            pool.close();
        }
        pool
    });
    drop(rt);
    let s = pool.snapshot();
    assert_eq!((s.workers, s.running, s.completed), (0, 0, 3), "{s:?}");
    assert_identities(&s);
}

#[test]
fn the_readme_example_then_dropping_the_runtime_counts_each_worker_once() {
    let panics = count_panics();
    for round in 0..20 {
        let current = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        readme_then_drop_runtime(current, round % 2 == 0);
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        readme_then_drop_runtime(multi, round % 2 == 1);
    }
    let _ = std::panic::take_hook();
    assert_eq!(panics.load(Ordering::SeqCst), 0, "something panicked");
}
