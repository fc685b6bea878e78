//! `/v1/marketplace/gpu/{id}/reviews`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiContext;
use super::auth::Caller;
use super::error::ErrorBody;
use super::extract::{ApiJson, ApiQuery, whole_number};
use crate::domain::{GpuId, Rating};
use crate::error::{Error, Result};
use crate::market::catalogue::page;
use crate::market::reviews::{self, GpuReviews, ReviewAdded};

pub fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new().routes(routes!(list, add))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// Default 10.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// Accepted reviews, newest first, with the GPU's aggregate.
#[utoipa::path(get, path = "/v1/marketplace/gpu/{id}/reviews", tag = "reviews", params(("id" = String, Path, description = "the GPU's id"), Paging),
    responses((status = 200, body = GpuReviews), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(ctx): State<ApiContext>,
    Path(id): Path<GpuId>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Json<GpuReviews>> {
    Ok(Json(
        reviews::list(
            &ctx.market,
            &id,
            page(paging.limit, paging.offset, 10, 100)?,
        )
        .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ReviewBody {
    /// An integer from 1 to 5.
    #[schema(value_type = i64, minimum = 1, maximum = 5)]
    pub rating: serde_json::Value,
    #[schema(max_length = 2000)]
    pub comment: Option<String>,
}

/// Review a GPU; the moderation policy accepts, flags (held for an admin) or rejects it.
#[utoipa::path(post, path = "/v1/marketplace/gpu/{id}/reviews", tag = "reviews", security(("api_key" = [])), params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]+$", description = "Makes the write safe to retry: a retry with the same key and body gets the first answer"), ("id" = String, Path, description = "the GPU's id")), request_body = ReviewBody,
    responses((status = 201, body = ReviewAdded), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn add(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    Path(id): Path<GpuId>,
    ApiJson(body): ApiJson<ReviewBody>,
) -> Result<(StatusCode, Json<ReviewAdded>)> {
    // The contract makes any rating other than an integer 1-5 a 422, including 0, 6 and 4.5.
    let rating = whole_number(&body.rating)
        .and_then(Rating::new)
        .ok_or_else(|| Error::unprocessable("rating must be an integer from 1 to 5"))?;
    let added = reviews::add(&ctx.market, &caller, &id, rating, body.comment).await?;
    Ok((StatusCode::CREATED, Json(added)))
}
