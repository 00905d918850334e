//! `GET /api/users/{id}`: concurrent requests for one id share one query (singleflight, seed
//! 002 §10) through moka's `try_get_with`, whose result stays cached for [`USER_TTL`].
//!
//! [`USER_TTL`]: crate::state::USER_TTL

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::AppError;
use crate::state::AppState;
use crate::storage::StoreError;

/// The handler.
pub(crate) async fn get_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let id: i64 = id
        .parse()
        .map_err(|_| AppError::BadRequest("the user id must be a number".into()))?;
    let shared = state.0.clone();
    let user = state
        .0
        .users
        .try_get_with(id, async move {
            shared.user_loads.fetch_add(1, Ordering::Relaxed);
            shared.storage.get_user(id).await.map(|u| u.map(Arc::new))
        })
        .await
        .map_err(|err| match &*err {
            StoreError::Timeout => AppError::Timeout {
                outcome_unknown: false,
            },
            StoreError::Unavailable | StoreError::Abandoned => AppError::Unavailable {
                reason: "the database is busy",
                retry_after_s: 1,
            },
            StoreError::Database(why) => AppError::Internal(why.clone()),
        })?;
    match user {
        Some(user) => Ok(Json(&*user).into_response()),
        None => Err(AppError::NotFound),
    }
}
