//! `/v1/admin/...`: review moderation queue.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::IntoParams;

use super::ApiContext;
use super::auth::Caller;
use super::error::ErrorBody;
use super::extract::ApiQuery;
use crate::domain::ReviewId;
use crate::error::Result;
use crate::market::catalogue::page;
use crate::market::reviews::{self, AdminReviewView};

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/v1/admin/reviews", get(list_reviews))
        .route("/v1/admin/reviews/{id}/approve", post(approve_review))
        .route("/v1/admin/reviews/{id}/reject", post(reject_review))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ReviewQueueParams {
    /// flagged (default), accepted or rejected.
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// Reviews by moderation status, newest first (admin).
#[utoipa::path(get, path = "/v1/admin/reviews", tag = "admin", params(ReviewQueueParams),
    responses((status = 200, body = [AdminReviewView]), (status = 403, body = ErrorBody)))]
pub async fn list_reviews(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    ApiQuery(params): ApiQuery<ReviewQueueParams>,
) -> Result<Json<Vec<AdminReviewView>>> {
    caller.require_admin()?;
    let status = params
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("flagged");
    Ok(Json(
        reviews::by_status(
            &ctx.market,
            status,
            page(params.limit, params.offset, 100, 500)?,
        )
        .await?,
    ))
}

/// Approve a flagged review: it is shown and counted from now on (admin).
#[utoipa::path(post, path = "/v1/admin/reviews/{id}/approve", tag = "admin",
    responses((status = 200, body = AdminReviewView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn approve_review(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    Path(id): Path<ReviewId>,
) -> Result<Json<AdminReviewView>> {
    caller.require_admin()?;
    Ok(Json(reviews::decide(&ctx.market, &id, true).await?))
}

/// Reject a flagged review (admin).
#[utoipa::path(post, path = "/v1/admin/reviews/{id}/reject", tag = "admin",
    responses((status = 200, body = AdminReviewView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn reject_review(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    Path(id): Path<ReviewId>,
) -> Result<Json<AdminReviewView>> {
    caller.require_admin()?;
    Ok(Json(reviews::decide(&ctx.market, &id, false).await?))
}
