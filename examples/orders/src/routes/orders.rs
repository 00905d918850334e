//! `POST /api/orders`: validate, then write through the [`OrderWriter`]; 201 `{"id": N}` only
//! once the order is committed.
//!
//! [`OrderWriter`]: crate::writer::OrderWriter

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, LengthLimitError};

use crate::error::AppError;
use crate::state::AppState;
use crate::storage::NewOrder;

const MAX_ITEM_CHARS: usize = 200;
const MAX_QUANTITY: i32 = 1000;

/// The handler.
pub(crate) async fn create(
    State(state): State<AppState>,
    req: Request<Body>,
) -> Result<Response, AppError> {
    if !is_json(req.headers()) {
        return Err(AppError::UnsupportedMediaType);
    }
    let arrival = req
        .extensions()
        .get::<crate::metrics::Arrival>()
        .map_or_else(tokio::time::Instant::now, |a| a.0);
    let body = collect(req.into_body()).await?;
    let order = parse(&body)?;
    let id = state.0.writer.write(order, arrival).await?;
    if let Some(confirmations) = &state.0.confirmations {
        confirmations.send(id, state.0.confirm_budget).await;
    }
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Reads the body under the layers' size limit and deadline, telling the two apart.
async fn collect(body: Body) -> Result<bytes::Bytes, AppError> {
    match body.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => {
            let err: Box<dyn std::error::Error + Send + Sync> = err.into_inner();
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*err);
            while let Some(e) = source {
                if e.is::<LengthLimitError>() {
                    return Err(AppError::TooLarge);
                }
                if e.is::<tower_http::timeout::TimeoutError>() {
                    return Err(AppError::BodyTimeout);
                }
                source = e.source();
            }
            Err(AppError::BadRequest(format!("reading the body: {err}")))
        }
    }
}

/// Syntax errors (bad JSON, bad UTF-8, a number no float holds) are 400; well-formed JSON with
/// wrong, missing, unknown or out-of-range fields is 422. serde_json's depth limit (128)
/// stands behind both, so no input can recurse the stack away.
///
/// serde's derived `Deserialize` also takes a struct as a sequence of its fields, so
/// `[1,"book",2]` would parse; an order is a JSON object only, and anything else that parsed
/// is 422 like every other well-formed body of the wrong shape.
fn parse(body: &[u8]) -> Result<NewOrder, AppError> {
    let order: NewOrder = serde_json::from_slice(body).map_err(|err| match err.classify() {
        serde_json::error::Category::Data => AppError::Invalid(err.to_string()),
        _ => AppError::BadRequest(format!("malformed JSON: {err}")),
    })?;
    // The parse succeeded, so the first byte past JSON whitespace opens an object or an array.
    let first = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(AppError::Invalid("an order must be a JSON object".into()));
    }
    if order.user_id <= 0 {
        return Err(AppError::Invalid("user_id must be positive".into()));
    }
    if order.item.trim().is_empty() || order.item.chars().count() > MAX_ITEM_CHARS {
        return Err(AppError::Invalid(format!(
            "item must have 1 to {MAX_ITEM_CHARS} characters"
        )));
    }
    if !(1..=MAX_QUANTITY).contains(&order.quantity) {
        return Err(AppError::Invalid(format!(
            "quantity must be between 1 and {MAX_QUANTITY}"
        )));
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_is_400_and_fields_are_422() {
        let status = |body: &[u8]| {
            parse(body)
                .map(|_| 201)
                .unwrap_or_else(|e| e.into_response().status().as_u16())
        };
        assert_eq!(status(br#"{"user_id":1,"item":"book","quantity":2}"#), 201);
        assert_eq!(status(b"{"), 400);
        assert_eq!(
            status(b"{\"user_id\":1,\"item\":\"\xff\",\"quantity\":2}"),
            400
        );
        // Deep nesting never recurses: the typed parse stops at the first value of the wrong
        // type (a list where `user_id` goes), long before serde_json's depth limit.
        let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(status(nested.as_bytes()), 422);
        let nested = format!(
            "{{\"user_id\":{}{}}}",
            "{\"a\":".repeat(10_000),
            "}".repeat(10_000)
        );
        assert_eq!(status(nested.as_bytes()), 422);
        assert_eq!(
            status(br#"{"user_id":1,"item":"book","quantity":99999999999}"#),
            422
        );
        assert_eq!(
            status(br#"{"user_id":1e400,"item":"book","quantity":1}"#),
            400
        );
        assert_eq!(status(br#"{"user_id":1,"item":"book","quantity":0}"#), 422);
        assert_eq!(status(br#"{"user_id":1,"item":"book"}"#), 422);
        // An array of the fields in order is not an order (serde would take it as a struct).
        assert_eq!(status(br#"[1,"book",2]"#), 422);
        assert_eq!(status(b" \n[1,\"book\",2]"), 422);
        assert_eq!(
            status(b" \r\n{\"user_id\":1,\"item\":\"book\",\"quantity\":2}"),
            201
        );
    }
}
