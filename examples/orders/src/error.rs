//! Every error a route can answer with, and its status code, in one place.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

/// An error answer: a status and a one-line JSON reason (`{"error": "..."}`).
#[derive(Debug)]
pub(crate) enum AppError {
    /// 400: the request cannot be parsed (bad JSON, bad id, bad UTF-8, nesting too deep).
    BadRequest(String),
    /// 404.
    NotFound,
    /// 408: the body did not arrive within the body deadline.
    BodyTimeout,
    /// 413: the body is larger than `--body-limit`.
    TooLarge,
    /// 415: not `application/json`.
    UnsupportedMediaType,
    /// 422: well-formed, but a field is out of range.
    Invalid(String),
    /// 503 + `Retry-After`: the service (or its upstream) cannot take this now; nothing done.
    Unavailable {
        reason: &'static str,
        retry_after_s: u64,
    },
    /// 504: the deadline passed. `outcome_unknown` when a write had begun and may commit.
    Timeout { outcome_unknown: bool },
    /// 500: a bug or a database error; the write, if any, was rolled back.
    Internal(String),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, reason) = match self {
            AppError::BadRequest(why) => (StatusCode::BAD_REQUEST, why),
            AppError::NotFound => (StatusCode::NOT_FOUND, "not found".to_owned()),
            AppError::BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time".to_owned(),
            ),
            AppError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "body too large".to_owned()),
            AppError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected content-type: application/json".to_owned(),
            ),
            AppError::Invalid(why) => (StatusCode::UNPROCESSABLE_ENTITY, why),
            AppError::Unavailable {
                reason,
                retry_after_s,
            } => {
                let mut response =
                    json(StatusCode::SERVICE_UNAVAILABLE, reason.to_owned()).into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s.max(1)));
                return response;
            }
            AppError::Timeout { outcome_unknown } => (
                StatusCode::GATEWAY_TIMEOUT,
                if outcome_unknown {
                    "deadline passed; commit outcome unknown".to_owned()
                } else {
                    "deadline passed; nothing was written".to_owned()
                },
            ),
            AppError::Internal(why) => {
                tracing::error!(%why, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                )
            }
        };
        json(status, reason).into_response()
    }
}

fn json(status: StatusCode, reason: String) -> (StatusCode, axum::Json<serde_json::Value>) {
    (status, axum::Json(serde_json::json!({ "error": reason })))
}
