//! `GET /api/quote`: the upstream through one shared, pooled client (connect and total
//! timeouts set), behind the circuit breaker: open → 503 at once, timeout → 504, upstream
//! failure → 503.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderValue};

use crate::error::AppError;
use crate::state::AppState;

/// The handler.
pub(crate) async fn quote(State(state): State<AppState>) -> Result<Response, AppError> {
    let shared = &state.0;
    let permit = shared
        .breaker
        .acquire()
        .map_err(|wait| AppError::Unavailable {
            reason: "circuit open: the upstream is failing",
            retry_after_s: wait.as_secs() + 1,
        })?;
    let result = async {
        let response = shared.http.get(&shared.upstream_quote_url).send().await?;
        let response = response.error_for_status()?;
        response.bytes().await
    }
    .await;
    match result {
        Ok(body) => {
            permit.success();
            Ok(json(body))
        }
        Err(err) => {
            permit.failure();
            if err.is_timeout() {
                Err(AppError::Timeout {
                    outcome_unknown: false,
                })
            } else {
                Err(AppError::Unavailable {
                    reason: "the upstream failed",
                    retry_after_s: 1,
                })
            }
        }
    }
}

fn json(body: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}
