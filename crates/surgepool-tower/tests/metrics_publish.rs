//! `AdmissionLayer::publish_metrics` publishes exactly what `stats()` says, under the
//! layer's name.

use std::collections::HashMap;

use http::{Request, Response, StatusCode};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use surgepool::Limit;
use surgepool_tower::AdmissionLayer;
use tower::{service_fn, Layer, ServiceExt};

#[tokio::test(flavor = "current_thread")]
async fn published_counters_equal_the_stats() {
    let layer = AdmissionLayer::builder()
        .name("api")
        .limit(Limit::fixed(1))
        .build()
        .unwrap();
    let (release, gate) = tokio::sync::oneshot::channel::<()>();
    let gate = std::sync::Arc::new(tokio::sync::Mutex::new(Some(gate)));
    let svc = layer.layer(service_fn(move |_req: Request<()>| {
        let gate = gate.clone();
        async move {
            if let Some(g) = gate.lock().await.take() {
                let _ = g.await;
            }
            Ok::<_, std::convert::Infallible>(Response::new(String::new()))
        }
    }));
    // The first request holds the only permit; the second is shed at once.
    let first = tokio::spawn(svc.clone().oneshot(Request::new(())));
    tokio::task::yield_now().await;
    let shed = svc.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    release.send(()).unwrap();
    let ok = first.await.unwrap().unwrap();
    drop(ok.into_body());

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || layer.publish_metrics());
    let captured: HashMap<(String, Vec<(String, String)>), f64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (kind, key) = key.into_parts();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let name = format!(
                "{}:{}",
                if kind == MetricKind::Gauge { "g" } else { "c" },
                key.name()
            );
            let value = match value {
                DebugValue::Counter(v) => v as f64,
                DebugValue::Gauge(v) => v.into_inner(),
                other => panic!("unexpected {other:?}"),
            };
            ((name, labels), value)
        })
        .collect();
    let get = |name: &str, labels: &[(&str, &str)]| {
        let mut l: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        l.sort();
        captured.get(&(name.to_owned(), l)).copied()
    };
    let stats = layer.stats();
    assert_eq!((stats.admitted, stats.overloaded), (1, 1));
    assert_eq!(
        get(
            "c:surgepool_requests_total",
            &[("pool", "api"), ("outcome", "admitted")]
        ),
        Some(1.0)
    );
    assert_eq!(
        get(
            "c:surgepool_requests_total",
            &[("pool", "api"), ("outcome", "overloaded")]
        ),
        Some(1.0)
    );
    assert_eq!(
        get(
            "c:surgepool_shed_total",
            &[("pool", "api"), ("reason", "full")]
        ),
        Some(1.0)
    );
    assert_eq!(get("g:surgepool_limit", &[("pool", "api")]), Some(1.0));
    assert_eq!(get("g:surgepool_in_flight", &[("pool", "api")]), Some(0.0));
}
