//! A short mixed load (hello, users, orders, quote against a flaky upstream): no 5xx other
//! than deliberate 503/504, and every count on `/metrics` is what the clients saw.
//!
//! 4 s by default; the issue's 60 s run is
//! `ORDERS_MIXED_SECS=60 cargo test --release -p orders --test orders_mixed -- --nocapture`.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_metrics_match_what_clients_saw() {
    let dir = TempDir::new("mixed");
    let up = upstream(&dir, "0.3", "20");
    let upstream_url = format!("http://{}", up.addr);
    let p = service(
        &dir,
        &["--upstream-url", &upstream_url, "--breaker-cooldown", "300"],
    );
    let secs = std::env::var("ORDERS_MIXED_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(4)
        .clamp(1, 3600);
    let stop = Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let base = p.url("");
            tokio::spawn(async move {
                let c = client();
                let mut seen: BTreeMap<(&'static str, u16), u64> = BTreeMap::new();
                while Instant::now() < stop {
                    let (route, req) = match fastrand::u8(0..4) {
                        0 => ("/api/hello", c.get(format!("{base}/api/hello"))),
                        1 => (
                            "/api/users/{id}",
                            c.get(format!("{base}/api/users/{}", fastrand::u32(1..1200))),
                        ),
                        2 => (
                            "/api/orders",
                            c.post(format!("{base}/api/orders"))
                                .header("content-type", "application/json")
                                .body(r#"{"user_id": 3, "item": "pen", "quantity": 1}"#),
                        ),
                        _ => ("/api/quote", c.get(format!("{base}/api/quote"))),
                    };
                    let r = req
                        .send()
                        .await
                        .expect("no transport error under mixed load");
                    let status = r.status().as_u16();
                    let _ = r.bytes().await;
                    *seen.entry((route, status)).or_default() += 1;
                }
                seen
            })
        })
        .collect();
    let mut seen: BTreeMap<(&'static str, u16), u64> = BTreeMap::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *seen.entry(k).or_default() += v;
        }
    }
    eprintln!("{secs} s of mixed load, answers by (route, status): {seen:?}");
    for ((route, status), n) in &seen {
        assert!(
            *status < 500 || *status == 503 || *status == 504,
            "{n} answers {status} on {route}"
        );
    }
    assert!(seen.keys().any(|(r, s)| *r == "/api/orders" && *s == 201));
    assert!(seen
        .keys()
        .any(|(r, s)| *r == "/api/users/{id}" && *s == 404));
    let m = p.metrics_text().await;
    let mut total_metrics = 0;
    for line in m
        .lines()
        .filter(|l| l.starts_with("orders_http_requests_total{"))
    {
        total_metrics += line.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
    }
    for ((route, status), n) in &seen {
        let name = format!(r#"orders_http_requests_total{{route="{route}",status="{status}"}}"#);
        assert_eq!(metric(&m, &name), *n, "{name}");
    }
    assert_eq!(
        total_metrics,
        seen.values().sum::<u64>(),
        "metrics count answers no client saw"
    );
    let rows = sqlite_ids(&dir).len() as u64;
    let created = seen.get(&("/api/orders", 201)).copied().unwrap_or(0);
    assert!(rows >= created, "{rows} rows < {created} created");
    eprintln!("{created} orders answered 201, {rows} rows in the database");
}
