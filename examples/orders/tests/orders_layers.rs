//! What no endpoint test reaches: the admission layer's 503 when its limit is taken, the body
//! deadline's 408 for a body that stalls, and the drain bound cutting a request at shutdown.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;

/// Waits (at most about a second) until the admin listener reports one admitted request in
/// flight.
async fn until_one_admitted(p: &Proc) {
    for _ in 0..500 {
        if metric(&p.metrics_text().await, "orders_admission_in_flight") == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("no request was admitted and in flight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_admission_limit_sheds_with_503_and_retry_after() {
    let dir = TempDir::new("admission");
    // One slow request holds the only permit: the upstream answers after 1 s.
    let up = upstream(&dir, "0", "1000");
    let upstream_url = format!("http://{}", up.addr);
    let p = service(
        &dir,
        &[
            "--upstream-url",
            &upstream_url,
            "--upstream-timeout",
            "5000",
            "--admission-min",
            "1",
            "--admission-queue",
            "0",
        ],
    );
    let c = client();
    let slow = tokio::spawn({
        let (c, url) = (c.clone(), p.url("/api/quote"));
        async move { c.get(url).send().await.unwrap().status() }
    });
    // Explicit synchronisation: the permit is held once the admin listener says so.
    until_one_admitted(&p).await;

    let r = c.get(p.url("/api/hello")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let m = p.metrics_text().await;
    assert_eq!(metric(&m, "orders_admission_overloaded_total"), 1);
    assert_eq!(
        metric(
            &m,
            r#"orders_http_requests_total{route="/api/hello",status="503"}"#
        ),
        1
    );

    // The permit comes back with the slow answer; the next request is served.
    assert_eq!(slow.await.unwrap(), 200);
    let r = c.get(p.url("/api/hello")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn a_body_that_stalls_gets_408_and_writes_nothing() {
    let dir = TempDir::new("body408");
    let mut p = service(&dir, &[]);
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // 46 bytes promised, 10 sent, then nothing: the body deadline (1 s) answers.
    s.write_all(
        b"POST /api/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 46\r\n\r\n{\"user_id\"",
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert_eq!(status_of(&text), Some(408), "{text}");
    assert!(p.alive());
    assert!(sqlite_ids(&dir).is_empty(), "a stalled body wrote an order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_outlives_the_drain_timeout_is_cut_and_the_service_exits_0() {
    let dir = TempDir::new("drain");
    // The upstream answers after 8 s; the drain bound is 300 ms.
    let up = upstream(&dir, "0", "8000");
    let upstream_url = format!("http://{}", up.addr);
    let mut p = service(
        &dir,
        &[
            "--upstream-url",
            &upstream_url,
            "--upstream-timeout",
            "9000",
            "--request-timeout",
            "10000",
            "--drain-timeout",
            "300",
        ],
    );
    let c = client();
    let slow = tokio::spawn({
        let (c, url) = (c.clone(), p.url("/api/quote"));
        async move { c.get(url).send().await.map(|r| r.status()) }
    });
    until_one_admitted(&p).await;

    p.sigterm();
    // Far sooner than the upstream's 8 s: the drain bound cut the request.
    let status = tokio::task::block_in_place(|| p.wait_exit(Duration::from_secs(5)));
    assert!(status.success(), "exit status {status:?}");
    let answer = slow.await.unwrap();
    assert!(
        !matches!(answer, Ok(s) if s.is_success()),
        "the cut request was answered {answer:?}"
    );
}
