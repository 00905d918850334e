//! The public types have the auto traits servers need.

use surgepool_tower::*;

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}

type Inner = tower::util::BoxCloneSyncService<
    http::Request<axum::body::Body>,
    http::Response<axum::body::Body>,
    std::convert::Infallible,
>;

#[test]
fn auto_traits() {
    send_sync::<AdmissionLayer>();
    send_sync::<AdmissionLayerBuilder>();
    send_sync::<Admission<Inner>>();
    send::<ResponseFuture<Inner, http::Request<axum::body::Body>>>();
    send::<AdmissionBody<axum::body::Body>>();
    send_sync::<AdmissionBody<http_body_util::Full<bytes::Bytes>>>();
    send_sync::<OverloadResponse>();
    send_sync::<AdmissionStats>();
    send_sync::<BuildError>();
    send_sync::<Reason>();
    send_sync::<Outcome>();
}
