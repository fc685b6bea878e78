//! `/v1/admin/reviews`: the review moderation queue (admin).

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiContext;
use super::auth::Admin;
use super::error::ErrorBody;
use super::extract::ApiQuery;
use crate::domain::ReviewId;
use crate::error::Result;
use crate::market::catalogue::page;
use crate::market::reviews::{self, AdminReviewView};

pub fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(list_reviews))
        .routes(routes!(approve_review))
        .routes(routes!(reject_review))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReviewQueueParams {
    /// flagged (default), accepted or rejected.
    #[param(schema_with = crate::domain::ReviewStatus::filter_schema)]
    pub status: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// Reviews by moderation status, newest first (admin).
#[utoipa::path(get, path = "/v1/admin/reviews", tag = "admin", security(("api_key" = [])), params(ReviewQueueParams),
    responses((status = 200, body = [AdminReviewView]), (status = 403, body = ErrorBody)))]
pub async fn list_reviews(
    State(ctx): State<ApiContext>,
    _: Admin,
    ApiQuery(params): ApiQuery<ReviewQueueParams>,
) -> Result<Json<Vec<AdminReviewView>>> {
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
#[utoipa::path(post, path = "/v1/admin/reviews/{id}/approve", tag = "admin", security(("api_key" = [])), params(("id" = String, Path, description = "the review's id")),
    responses((status = 200, body = AdminReviewView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn approve_review(
    State(ctx): State<ApiContext>,
    _: Admin,
    Path(id): Path<ReviewId>,
) -> Result<Json<AdminReviewView>> {
    Ok(Json(reviews::decide(&ctx.market, &id, true).await?))
}

/// Reject a flagged review (admin).
#[utoipa::path(post, path = "/v1/admin/reviews/{id}/reject", tag = "admin", security(("api_key" = [])), params(("id" = String, Path, description = "the review's id")),
    responses((status = 200, body = AdminReviewView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn reject_review(
    State(ctx): State<ApiContext>,
    _: Admin,
    Path(id): Path<ReviewId>,
) -> Result<Json<AdminReviewView>> {
    Ok(Json(reviews::decide(&ctx.market, &id, false).await?))
}
