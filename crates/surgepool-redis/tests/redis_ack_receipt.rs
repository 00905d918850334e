//! `ack.lua` is idempotent per batch: a retry of a batch whose reply was lost (Redis killed
//! after applying it, a timeout) gets the first call's flags back, not 0s that would count the
//! consumer's own acks as "settled elsewhere" (`stale`). The next batch deletes the receipt.

mod support;

use redis::AsyncCommands;

use support::*;

const ACK: &str = include_str!("../src/scripts/ack.lua");

async fn ack(
    conn: &mut redis::aio::MultiplexedConnection,
    receipt: &str,
    previous: Option<&str>,
    ids: &[String],
) -> Vec<i64> {
    let script = redis::Script::new(ACK);
    let mut inv = script.key("s");
    inv.key(receipt);
    if let Some(p) = previous {
        inv.key(p);
    }
    inv.arg("g").arg(60_000);
    for id in ids {
        inv.arg(id);
    }
    inv.invoke_async(conn).await.unwrap()
}

#[tokio::test]
async fn a_retried_ack_batch_returns_its_first_flags_and_the_next_batch_drops_the_receipt() {
    let Some(server) = server("a_retried_ack_batch_returns_its_first_flags") else {
        return;
    };
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("s")
        .arg("g")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let id: String = conn.xadd("s", "*", &[("p", i)]).await.unwrap();
        ids.push(id);
    }
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g")
        .arg("c")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg("s")
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
    // One id is not pending: settled elsewhere, 0 in both calls.
    let mut batch = ids[..2].to_vec();
    batch.push("0-1".to_owned());

    assert_eq!(ack(&mut conn, "r1", None, &batch).await, [1, 1, 0]);
    assert_eq!(
        ack(&mut conn, "r1", None, &batch).await,
        [1, 1, 0],
        "the retry of a batch returns its first flags"
    );
    let len: u64 = conn.xlen("s").await.unwrap();
    assert_eq!(len, 1, "acked entries are deleted, once");

    // The next batch deletes the previous receipt and keeps its own, with a TTL.
    assert_eq!(ack(&mut conn, "r2", Some("r1"), &ids[2..]).await, [1]);
    let r1: bool = conn.exists("r1").await.unwrap();
    assert!(!r1, "the previous receipt is deleted");
    let ttl: i64 = conn.pttl("r2").await.unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "the receipt expires: {ttl}");
    // A new batch with the same entries (not a retry) sees them settled.
    assert_eq!(ack(&mut conn, "r3", Some("r2"), &ids).await, [0, 0, 0]);
    let len: u64 = conn.xlen("s").await.unwrap();
    assert_eq!(len, 0);
}
