//! `GET /api/hello`: a response serialised once, at compile time, and handed out as a
//! reference-counted-free static `Bytes` (seed 002 §3, §5): the handler allocates nothing.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderValue};

/// The body, built once.
pub(crate) static HELLO: Bytes = Bytes::from_static(br#"{"message":"Hello"}"#);

/// The handler.
pub(crate) async fn hello() -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        HELLO.clone(),
    )
        .into_response()
}
