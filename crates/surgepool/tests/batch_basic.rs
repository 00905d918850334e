//! The batcher's contract, one item at a time: outputs in order, `Full` and `Closed` hand the
//! item back, a wrong output count or a panic fails the batch (counted), bad settings are
//! build errors, and no argument panics.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use surgepool::batch::{BatchSnapshot, Batcher};
use surgepool::{Limit, SubmitError};
use tokio::sync::Semaphore;

/// The identities of API.md, which every snapshot must satisfy.
fn assert_identities(s: &BatchSnapshot) {
    assert_eq!(s.submitted, s.accepted + s.rejected, "{s:?}");
    assert_eq!(
        s.accepted,
        s.committed + s.failed + s.shed + s.cancelled + s.queued + s.in_flush,
        "{s:?}"
    );
}

fn echo() -> Batcher<u32, u32> {
    Batcher::builder(|items: Vec<u32>| async move { Ok::<_, String>(items) })
        .build()
        .unwrap()
}

#[tokio::test]
async fn each_item_gets_its_own_output() {
    let batcher: Batcher<u32, String> = Batcher::builder(|items: Vec<u32>| async move {
        Ok::<_, String>(items.iter().map(|i| format!("#{i}")).collect())
    })
    .limit(Limit::fixed(1))
    .build()
    .unwrap();
    let receipts: Vec<_> = (0..50).map(|i| batcher.try_submit(i).unwrap()).collect();
    for (i, r) in receipts.into_iter().enumerate() {
        assert_eq!(r.await.unwrap(), format!("#{i}"));
    }
    let s = batcher.snapshot();
    assert_identities(&s);
    assert_eq!((s.accepted, s.committed, s.failed), (50, 50, 0));
    assert!(
        s.flushes < 50,
        "items queued behind a flush share one: {s:?}"
    );
    assert_eq!(s.batch_size.count, s.flushes);
    assert_eq!(s.item_latency.count, 50);
}

#[tokio::test]
async fn full_and_closed_hand_the_item_back() {
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let batcher = Batcher::builder(move |items: Vec<String>| {
        let g = g.clone();
        async move {
            let _p = g.acquire().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(items)
        }
    })
    .limit(Limit::fixed(1))
    .queue_capacity(2)
    .build()
    .unwrap();
    let flushing = batcher.try_submit("a".to_owned()).unwrap();
    let queued: Vec<_> = ["b", "c"]
        .iter()
        .map(|s| batcher.try_submit(s.to_string()).unwrap())
        .collect();
    match batcher.try_submit("d".to_owned()) {
        Err(SubmitError::Full(item)) => assert_eq!(item, "d"),
        other => panic!("expected Full, got {other:?}"),
    }
    let wait = batcher
        .submit_timeout("e".to_owned(), Duration::from_millis(10))
        .await;
    assert_eq!(wait.unwrap_err().into_inner(), "e");
    let s = batcher.snapshot();
    assert_identities(&s);
    assert_eq!(
        (s.submitted, s.rejected, s.queued, s.in_flush),
        (5, 2, 2, 1)
    );

    batcher.close();
    match batcher.try_submit("f".to_owned()) {
        Err(SubmitError::Closed(item)) => assert_eq!(item, "f"),
        other => panic!("expected Closed, got {other:?}"),
    }
    gate.add_permits(10);
    assert_eq!(flushing.await.unwrap(), "a");
    for (r, want) in queued.into_iter().zip(["b", "c"]) {
        assert_eq!(r.await.unwrap(), want);
    }
    let report = batcher.shutdown().await;
    assert!(!report.timed_out);
    let s = batcher.snapshot();
    assert_identities(&s);
    assert_eq!((s.committed, s.rejected), (3, 3));
}

#[tokio::test]
async fn a_waiting_submit_gets_room_when_a_flush_takes_the_queue() {
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let batcher = Batcher::builder(move |items: Vec<u8>| {
        let g = g.clone();
        async move {
            g.acquire().await.unwrap().forget();
            Ok::<_, String>(items)
        }
    })
    .limit(Limit::fixed(1))
    .queue_capacity(1)
    .build()
    .unwrap();
    let first = batcher.try_submit(1).unwrap();
    let second = batcher.try_submit(2).unwrap();
    let b = batcher.clone();
    let third = tokio::spawn(async move { b.submit(3).await.unwrap().await });
    tokio::task::yield_now().await;
    assert_eq!(
        batcher.snapshot().submitted,
        2,
        "the waiting submit is not counted yet"
    );
    gate.add_permits(3);
    assert_eq!(first.await.unwrap(), 1);
    assert_eq!(second.await.unwrap(), 2);
    assert_eq!(third.await.unwrap().unwrap(), 3);
    assert_identities(&batcher.snapshot());
}

#[tokio::test]
async fn a_wrong_output_count_fails_every_item_of_the_batch() {
    let batcher = Batcher::builder(|items: Vec<u32>| async move {
        let mut out = items.clone();
        if items.len() > 1 {
            out.pop();
        }
        Ok::<_, String>(out)
    })
    .limit(Limit::fixed(1))
    .build()
    .unwrap();
    let gate = batcher.try_submit(0).unwrap(); // flushed alone: right count
    let batch: Vec<_> = (1..=3).map(|i| batcher.try_submit(i).unwrap()).collect();
    assert_eq!(gate.await.unwrap(), 0);
    for r in batch {
        let err = r.await.unwrap_err();
        assert!(err.is_output_count(), "{err:?}");
        assert!(err.to_string().contains("2 outputs for 3 items"), "{err}");
    }
    let s = batcher.snapshot();
    assert_identities(&s);
    assert_eq!((s.committed, s.failed, s.failed_flushes), (1, 3, 1));
}

#[tokio::test]
async fn a_panicking_flush_fails_its_items_and_the_batcher_lives_on() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let batcher = Batcher::builder(move |items: Vec<u32>| {
        let call = c.fetch_add(1, Ordering::SeqCst);
        if call == 0 {
            panic!("flush called badly");
        }
        async move {
            if items.contains(&7) {
                panic!("seven");
            }
            Ok::<_, String>(items)
        }
    })
    .build()
    .unwrap();
    let err = batcher.try_submit(1).unwrap().await.unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.panic_message(), Some("flush called badly"));
    let err = batcher.try_submit(7).unwrap().await.unwrap_err();
    assert_eq!(err.panic_message(), Some("seven"));
    assert_eq!(batcher.try_submit(2).unwrap().await.unwrap(), 2);
    let s = batcher.snapshot();
    assert_identities(&s);
    assert_eq!((s.committed, s.failed, s.failed_flushes), (1, 2, 2));
}

#[tokio::test]
async fn panics_in_user_drops_are_isolated() {
    /// Panics when dropped while armed (one at a time: a second panic while unwinding
    /// would abort the process, whoever caught the first).
    struct Bomb(bool);
    impl Drop for Bomb {
        fn drop(&mut self) {
            if self.0 {
                panic!("bomb");
            }
        }
    }
    // An armed item explodes inside the flush; an armed output explodes in the batcher's
    // hands when its receipt was dropped.
    let batcher = Batcher::builder(|items: Vec<Bomb>| async move {
        let arm_output = !items[0].0;
        drop(items);
        Ok::<_, String>(vec![Bomb(arm_output)])
    })
    .limit(Limit::fixed(1))
    .build()
    .unwrap();
    match batcher.try_submit(Bomb(true)).ok().unwrap().await {
        Err(err) => assert!(err.is_panic(), "{err:?}"),
        Ok(_) => panic!("the flush panicked while dropping its item"),
    }
    drop(batcher.try_submit(Bomb(false)).ok().unwrap());
    let report = batcher.shutdown().await;
    assert_eq!(report.drained, 1);
    let s = batcher.snapshot();
    assert_identities(&s);
    assert_eq!((s.committed, s.failed), (1, 1));
}

#[tokio::test]
async fn bad_settings_are_build_errors() {
    let flush = |items: Vec<u8>| async move { Ok::<_, String>(items) };
    let err = Batcher::builder(flush)
        .max_batch_size(0)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "max_batch_size");
    let err = Batcher::builder(flush)
        .queue_capacity(0)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "queue_capacity");
    let err = Batcher::builder(flush)
        .limit(Limit::fixed(0))
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "limit");
}

#[test]
fn building_outside_a_runtime_is_an_error_not_a_panic() {
    let flush = |items: Vec<u8>| async move { Ok::<_, String>(items) };
    let err = Batcher::builder(flush).build().unwrap_err();
    assert_eq!(err.setting(), "runtime");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let batcher = Batcher::builder(flush)
        .runtime(rt.handle().clone())
        .build()
        .unwrap();
    let receipt = batcher.try_submit(9).unwrap();
    assert_eq!(rt.block_on(receipt).unwrap(), 9);
}

#[tokio::test(start_paused = true)]
async fn extreme_arguments_do_not_panic() {
    let batcher = Batcher::builder(|items: Vec<u8>| async move { Ok::<_, String>(items) })
        .max_batch_size(usize::MAX)
        .max_linger(Duration::MAX)
        .queue_timeout(Duration::MAX)
        .queue_capacity(usize::MAX)
        .build()
        .unwrap();
    let r = batcher.submit_timeout(1, Duration::MAX).await.unwrap();
    // An endless linger never fires: close flushes what waits.
    let report = batcher.shutdown_timeout(Duration::MAX).await;
    assert_eq!(r.await.unwrap(), 1);
    assert_eq!((report.drained, report.cancelled), (1, 0));
    let zero = echo();
    let r = zero.submit_timeout(2, Duration::ZERO).await.unwrap();
    assert_eq!(r.await.unwrap(), 2);
    let report = zero.shutdown_timeout(Duration::ZERO).await;
    assert!(!report.timed_out);
}

#[tokio::test(start_paused = true)]
async fn queue_timeout_sheds_what_waited_too_long() {
    let batcher = Batcher::builder(|items: Vec<u8>| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, String>(items)
    })
    .limit(Limit::fixed(1))
    .max_batch_size(1)
    .queue_timeout(Duration::from_millis(150))
    .build()
    .unwrap();
    let receipts: Vec<_> = (0..4).map(|i| batcher.try_submit(i).unwrap()).collect();
    let mut outcomes = Vec::new();
    for r in receipts {
        outcomes.push(r.await.map_err(|e| e.is_shed()));
    }
    // 0 flushes at once, 1 at 100 ms (waited 100), 2 at 200 ms (waited 200 > 150: shed), 3 too.
    assert_eq!(outcomes, vec![Ok(0), Ok(1), Err(true), Err(true)]);
    let s = batcher.snapshot();
    assert_identities(&s);
    assert_eq!((s.committed, s.shed), (2, 2));
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<X: Send + Sync>() {}
    fn send<X: Send>() {}
    send_sync::<Batcher<u32, String>>();
    send_sync::<surgepool::batch::BatcherBuilder<u32, String>>();
    send_sync::<surgepool::batch::BatchError>();
    send_sync::<BatchSnapshot>();
    send::<surgepool::batch::Receipt<String>>();
    send_sync::<surgepool::batch::Receipt<String>>();
}
