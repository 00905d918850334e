//! The circuit breaker against the real flaky upstream: it opens when the upstream fails,
//! answers 503 at once while open, half-opens after the cooldown, and closes once the
//! upstream recovers.

mod support;

use std::time::{Duration, Instant};

use support::*;

async fn state(p: &Proc) -> u64 {
    let m = p.metrics_text().await;
    metric(&m, "orders_breaker_state")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_answers_fast_half_opens_and_closes() {
    let dir = TempDir::new("breaker");
    // The upstream starts healthy, but slow enough that "fast" below means something.
    let up = upstream(&dir, "0", "200");
    let upstream_url = format!("http://{}", up.addr);
    let p = service(
        &dir,
        &[
            "--upstream-url",
            &upstream_url,
            "--breaker-failures",
            "3",
            "--breaker-cooldown",
            "500",
            "--upstream-timeout",
            "1000",
        ],
    );
    let c = client();
    let quote = || async { c.get(p.url("/api/quote")).send().await.unwrap() };
    assert_eq!(quote().await.status(), 200);

    // The upstream breaks: three failures (503 each) open the breaker.
    let control = |q: &'static str| {
        let c = c.clone();
        let url = format!("{upstream_url}/control?{q}");
        async move { assert_eq!(c.post(url).send().await.unwrap().status(), 204) }
    };
    control("fail_rate=1&delay_ms=200").await;
    for _ in 0..3 {
        assert_eq!(quote().await.status(), 503);
    }
    assert_eq!(state(&p).await, 1, "open after 3 failures");

    // Open: 503 with Retry-After, without waiting for the 200 ms upstream.
    let start = Instant::now();
    let r = quote().await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().await.unwrap().contains("circuit open"));
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "open breaker must not call the upstream"
    );

    // Still failing after the cooldown: the probe fails and the breaker re-opens.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(quote().await.status(), 503); // the probe, which failed
    assert_eq!(state(&p).await, 1, "a failed probe re-opens");

    // The upstream recovers: after the cooldown the probe goes through, and the breaker
    // closes. While the probe is out the breaker is half-open and others get 503 at once.
    control("fail_rate=0&delay_ms=300").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let probe = tokio::spawn({
        let c = c.clone();
        let url = p.url("/api/quote");
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(state(&p).await, 2, "half-open while the probe is out");
    assert_eq!(quote().await.status(), 503);
    assert_eq!(probe.await.unwrap(), 200);
    assert_eq!(state(&p).await, 0, "closed after a good probe");
    assert_eq!(quote().await.status(), 200);

    // A slow upstream is a 504 (and a failure).
    control("fail_rate=0&delay_ms=2000").await;
    assert_eq!(quote().await.status(), 504);
    let m = p.metrics_text().await;
    assert_eq!(metric(&m, "orders_breaker_opened_total"), 2);
}
