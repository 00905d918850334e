//! Hostile input: each case gets the right 4xx or a closed connection, the process stays up,
//! its RSS stays bounded, and the next normal request succeeds.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

const ORDER: &str = r#"{"user_id": 1, "item": "book", "quantity": 2}"#;

fn hello_ok(p: &Proc) {
    let text = raw(
        p.addr,
        b"GET /api/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(status_of(&text), Some(200), "{text}");
}

fn post_raw(p: &Proc, content_type: &str, body: &[u8]) -> Option<u16> {
    let mut req = format!(
        "POST /api/orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    status_of(&raw(p.addr, &req, Duration::from_secs(5)))
}

#[test]
fn hostile_input_gets_4xx_or_a_closed_connection_and_the_service_lives() {
    let dir = TempDir::new("hostile");
    // A short header timeout so slowloris connections are cut within the test; a long request
    // timeout, which makes the idle timeout (their sum) long.
    let mut p = service(
        &dir,
        &["--header-timeout", "1000", "--request-timeout", "10000"],
    );
    hello_ok(&p);
    let rss_start = p.rss_kib();

    // Slowloris: 200 connections dribbling a header byte at a time.
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(p.addr).unwrap();
            s.write_all(b"GET /api/hello HTTP/1.1\r\nX-a: ").unwrap();
            s
        })
        .collect();
    hello_ok(&p); // others are still served meanwhile
    let start = Instant::now();
    for s in &mut slow {
        let _ = s.write_all(b"a");
    }
    // Past the header timeout every one of them is closed by the server.
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(
            n == 0 || head.starts_with("HTTP/1.1 408"),
            "slowloris not cut: {head}"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    drop(slow);
    hello_ok(&p);

    // A keep-alive connection that sends no next request is closed past the header timeout
    // after its answer (1 to 1.25 s), not kept for the idle timeout (11 s here).
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.write_all(b"GET /api/hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    let closed = s.read_to_end(&mut answer).is_ok();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        closed && start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    // 64 KiB of headers: 431 or a closed connection.
    let big = format!(
        "GET /api/hello HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let text = raw(p.addr, big.as_bytes(), Duration::from_secs(5));
    assert!(
        text.is_empty() || status_of(&text) == Some(431),
        "{text:.200}"
    );
    hello_ok(&p);

    // More headers than hyper's bound (100), each small: 431 or a closed connection.
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let req = format!("GET /api/hello HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let text = raw(p.addr, req.as_bytes(), Duration::from_secs(5));
    assert!(
        text.is_empty() || status_of(&text) == Some(431),
        "{text:.200}"
    );
    hello_ok(&p);

    // A 100 MB body, declared: 413 before it is read. Undeclared (chunked): 413 or closed.
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.write_all(b"POST /api/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n").unwrap();
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..100 {
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.is_empty() || status_of(&text) == Some(413),
        "{text:.200}"
    );
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.write_all(b"POST /api/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    for _ in 0..100 {
        if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .is_err()
            || s.write_all(&chunk).is_err()
            || s.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.is_empty() || status_of(&text) == Some(413),
        "{text:.200}"
    );
    hello_ok(&p);

    // Bad payloads.
    assert_eq!(
        post_raw(
            &p,
            "application/json",
            b"{\"user_id\":1,\"item\":\"\xff\xfe\",\"quantity\":2}"
        ),
        Some(400)
    );
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        post_raw(&p, "application/json", nested.as_bytes()),
        Some(413)
    ); // 200 KB > limit
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(
        post_raw(&p, "application/json", nested.as_bytes()),
        Some(422)
    );
    let nested = format!("{}{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    assert_eq!(
        post_raw(&p, "application/json", nested.as_bytes()),
        Some(422)
    );
    assert_eq!(
        post_raw(
            &p,
            "application/json",
            br#"{"user_id":1,"item":"book","quantity":1e99}"#
        ),
        Some(422)
    );
    assert_eq!(
        post_raw(
            &p,
            "application/json",
            br#"{"user_id":99999999999999999999999,"item":"b","quantity":1}"#
        ),
        Some(422)
    );
    assert_eq!(
        post_raw(&p, "application/x-evil", ORDER.as_bytes()),
        Some(415)
    );
    let text = raw(
        p.addr,
        b"GET /api/hello HTTP/1.1\r\nHost: \xff\xfe\r\nX: \x01\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(
        text.is_empty() || status_of(&text).is_some_and(|s| s == 200 || s == 400),
        "{text}"
    );
    hello_ok(&p);

    // Pipelining flood: 5,000 requests written at once on one connection, never read until
    // the end. Each gets an answer in order, or the server closes the connection.
    let mut s = TcpStream::connect(p.addr).unwrap();
    let one = b"GET /api/hello HTTP/1.1\r\nHost: x\r\n\r\n";
    let flood: Vec<u8> = one.iter().copied().cycle().take(one.len() * 5000).collect();
    let writer = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = s.write_all(&flood);
            let _ = s.write_all(b"GET /api/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        })
    };
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    writer.join().unwrap();
    let text = String::from_utf8_lossy(&out);
    let answered = text.matches("HTTP/1.1 ").count();
    let bad = text.matches("HTTP/1.1 ").count()
        - text.matches("HTTP/1.1 200").count()
        - text.matches("HTTP/1.1 429").count()
        - text.matches("HTTP/1.1 503").count();
    assert_eq!(bad, 0, "pipelined requests got errors other than 429/503");
    assert!(answered > 0);
    hello_ok(&p);

    assert!(p.alive());
    let rss_end = p.rss_kib();
    assert!(
        rss_end < rss_start + 64 * 1024,
        "RSS grew from {rss_start} KiB to {rss_end} KiB"
    );
    // Bounded throughout, not only at the end: the 100 MB body was never buffered, and no
    // flood above held more than a few tens of MiB at once.
    let rss_peak = p.rss_peak_kib();
    eprintln!("RSS: start {rss_start} KiB, end {rss_end} KiB, peak {rss_peak} KiB");
    assert!(
        rss_peak < rss_start + 64 * 1024,
        "RSS peaked at {rss_peak} KiB (start {rss_start} KiB)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_burst_gets_429_with_retry_after() {
    let dir = TempDir::new("ratelimit");
    let p = service(&dir, &["--rate-limit", "5", "--rate-burst", "10"]);
    let c = client();
    let mut ok = 0;
    let mut limited = 0;
    for _ in 0..40 {
        let r = c.get(p.url("/api/hello")).send().await.unwrap();
        match r.status().as_u16() {
            200 => ok += 1,
            429 => {
                limited += 1;
                let retry: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(retry >= 1);
            }
            other => panic!("unexpected {other}"),
        }
    }
    // The burst is 10; at 5/s a few more may refill while the loop runs, never 30 more.
    assert!((10..30).contains(&ok), "ok {ok}");
    assert_eq!(ok + limited, 40);
    let m = p.metrics_text().await;
    assert_eq!(
        metric(
            &m,
            r#"orders_http_requests_total{route="/api/hello",status="429"}"#
        ),
        limited
    );

    // X-Forwarded-For is ignored from an untrusted peer: a forged header buys no new bucket.
    let r = c
        .get(p.url("/api/hello"))
        .header("x-forwarded-for", "1.2.3.4")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);

    // A client that waits as long as `Retry-After` says is served again.
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let r = c.get(p.url("/api/hello")).send().await.unwrap();
    assert_eq!(r.status(), 200, "after waiting Retry-After: {retry} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_right_most_hop_is_the_key() {
    let dir = TempDir::new("xff");
    let p = service(
        &dir,
        &[
            "--rate-limit",
            "1",
            "--rate-burst",
            "2",
            "--trusted-proxy",
            "127.0.0.1",
        ],
    );
    let c = client();
    let get = |xff: &'static str| {
        let req = c.get(p.url("/api/hello")).header("x-forwarded-for", xff);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    // Client 9.9.9.9 (as our proxy saw it) spends its burst, whatever it claims on the left.
    assert_eq!(get("1.1.1.1, 9.9.9.9").await, 200);
    assert_eq!(get("2.2.2.2, 9.9.9.9").await, 200);
    assert_eq!(get("3.3.3.3, 9.9.9.9").await, 429);
    // Another client has its own bucket.
    assert_eq!(get("9.9.9.9, 8.8.8.8").await, 200);
}
