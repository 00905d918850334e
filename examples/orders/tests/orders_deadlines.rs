//! Orders whose commit misses the deadline: 504, saying whether anything may have been
//! written, and never a row behind a 504 that said "nothing was written". The database is
//! made slow for real: the test holds SQLite's write lock (or a PostgreSQL table lock).
//! Also: a full batcher's 503 on both databases, and a user read past its query timeout.

mod support;

use std::time::Duration;

use support::*;

const ORDER: &str = r#"{"user_id": 1, "item": "book", "quantity": 2}"#;

#[derive(Debug, Default)]
struct Answers {
    created: u64,
    unknown: u64,
    not_written: u64,
    unavailable: u64,
}

/// Sends `n` orders at once while the database is locked; returns what came back.
async fn orders_while_locked(p: &Proc, n: usize) -> Answers {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let c = client();
            let url = p.url("/api/orders");
            tokio::spawn(async move {
                let r = c
                    .post(url)
                    .header("content-type", "application/json")
                    .body(ORDER)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let retry = r.headers().contains_key("retry-after");
                (status, retry, r.text().await.unwrap())
            })
        })
        .collect();
    let mut a = Answers::default();
    for call in calls {
        let (status, retry, body) = call.await.unwrap();
        match status {
            201 => a.created += 1,
            504 if body.contains("outcome unknown") => a.unknown += 1,
            504 if body.contains("nothing was written") => a.not_written += 1,
            503 => {
                assert!(retry, "503 without Retry-After");
                a.unavailable += 1
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    a
}

async fn check(p: &Proc, a: &Answers, rows: usize) {
    eprintln!("answers {a:?}, rows {rows}");
    assert_eq!(
        a.created, 0,
        "nothing can commit while the lock is held: {a:?}"
    );
    assert!(a.unknown + a.not_written > 0, "no 504 at all: {a:?}");
    assert!(
        rows as u64 <= a.unknown,
        "{rows} rows but only {} unknown outcomes: {a:?}",
        a.unknown
    );
    // The service is fine afterwards.
    let c = client();
    let r = c
        .post(p.url("/api/orders"))
        .header("content-type", "application/json")
        .body(ORDER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

async fn sqlite_case(extra: &[&str]) {
    let dir = TempDir::new("deadline");
    let mut args = vec!["--request-timeout", "1000"];
    args.extend_from_slice(extra);
    let p = service(&dir, &args);
    let lock = rusqlite::Connection::open(dir.0.join("orders.db")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let a = orders_while_locked(&p, 8).await;
    // Held past the orders' deadline, released before the writer's busy timeout: a write
    // that had begun may now commit (its 504 said so); the others must not.
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let rows = sqlite_ids(&dir).len();
    check(&p, &a, rows).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_commit_past_the_deadline_is_504_and_says_what_was_written() {
    sqlite_case(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_no_batch_commit_past_the_deadline_is_504_and_says_what_was_written() {
    sqlite_case(&["--no-batch"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_commit_past_the_deadline_is_504_and_says_what_was_written() {
    let Some(pg) = postgres("deadline").await else {
        return;
    };
    let dir = TempDir::new("deadline-pg");
    let p = service_on(&dir, &pg.url, &["--request-timeout", "1000"]);
    pg.client
        .batch_execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let a = orders_while_locked(&p, 8).await;
    pg.client.batch_execute("ROLLBACK").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let rows = postgres_ids(&pg.client).await.len();
    check(&p, &a, rows).await;
    drop(p);
    pg.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_batcher_full_is_503_with_retry_after_and_writes_nothing() {
    let dir = TempDir::new("full");
    let p = service(
        &dir,
        &["--request-timeout", "1000", "--queue-capacity", "1"],
    );
    let lock = rusqlite::Connection::open(dir.0.join("orders.db")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let a = orders_while_locked(&p, 24).await;
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // One order in the flush, one queued: of the 16 or more that admission lets through,
    // the others are handed back at once.
    assert!(a.unavailable >= 10, "{a:?}");
    let rows = sqlite_ids(&dir).len();
    check(&p, &a, rows).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_batcher_full_is_503_with_retry_after_and_writes_nothing() {
    let Some(pg) = postgres("full").await else {
        return;
    };
    let dir = TempDir::new("full-pg");
    let p = service_on(
        &dir,
        &pg.url,
        &["--request-timeout", "1000", "--queue-capacity", "1"],
    );
    pg.client
        .batch_execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let a = orders_while_locked(&p, 48).await;
    pg.client.batch_execute("ROLLBACK").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The batcher's adaptive limit starts at the machine's parallelism: that many flushes
    // wait on the lock, one order is queued, and the others are handed back at once.
    assert!(a.unavailable >= 10, "{a:?}");
    let rows = postgres_ids(&pg.client).await.len();
    check(&p, &a, rows).await;
    drop(p);
    pg.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_user_query_past_its_timeout_is_504_and_the_next_is_served() {
    let Some(pg) = postgres("users_timeout").await else {
        return;
    };
    let dir = TempDir::new("users-timeout-pg");
    let p = service_on(&dir, &pg.url, &["--request-timeout", "5000"]);
    pg.client
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let c = client();
    // The query waits on the lock until its timeout (2 s, the server's and ours): a 504,
    // well before the 5 s request deadline.
    let r = c.get(p.url("/api/users/1")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(r.text().await.unwrap().contains("deadline passed"));
    pg.client.batch_execute("ROLLBACK").await.unwrap();
    // The failed load was not cached.
    let r = c.get(p.url("/api/users/1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    drop(p);
    pg.drop_schema().await;
}
