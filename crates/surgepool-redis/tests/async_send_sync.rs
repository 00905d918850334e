//! Every public type's auto traits: what users can share across tasks and threads.

use surgepool_redis::server::RedisServer;
use surgepool_redis::*;

fn send_unpin<T: Send + Unpin>() {}
fn send_sync_unpin<T: Send + Sync + Unpin>() {}

#[test]
fn public_types_are_send_and_sync() {
    send_sync_unpin::<Queue>();
    send_sync_unpin::<QueueBuilder>();
    send_sync_unpin::<Consumer>();
    send_sync_unpin::<ConsumerBuilder>();
    send_sync_unpin::<Overflow>();
    send_sync_unpin::<Job>();
    send_sync_unpin::<JobError>();
    send_sync_unpin::<Snapshot>();
    send_sync_unpin::<DrainReport>();
    send_sync_unpin::<FleetStats>();
    send_sync_unpin::<OverflowStats>();
    send_sync_unpin::<PushError>();
    send_sync_unpin::<PushManyError>();
    send_sync_unpin::<OverflowError>();
    send_sync_unpin::<RedisError>();
    send_sync_unpin::<BuildError>();
    send_sync_unpin::<Routed>();
    send_sync_unpin::<RedisServer>();
    send_unpin::<HandlerFuture>();
}

#[test]
fn consumer_run_until_and_overflow_submit_are_send() {
    fn send<T: Send>(_: &T) {}
    fn check(consumer: Consumer, overflow: Overflow) {
        send(&consumer.run_until(async {}));
        send(&overflow.submit(&b"x"[..]));
    }
    let _ = check;
}
