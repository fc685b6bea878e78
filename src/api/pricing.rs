//! `/v1/marketplace/pricing/{model}`.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};

use super::ApiContext;
use super::error::ErrorBody;
use crate::error::Result;
use crate::market::model_pricing::{self as pricing, ModelPricing};

pub fn router() -> Router<ApiContext> {
    Router::new().route("/v1/marketplace/pricing/{model}", get(model_pricing))
}

/// Price statistics, history and a live quote for a GPU model.
#[utoipa::path(get, path = "/v1/marketplace/pricing/{model}", tag = "pricing",
    responses((status = 200, body = ModelPricing), (status = 404, body = ErrorBody)))]
pub async fn model_pricing(
    State(ctx): State<ApiContext>,
    Path(model): Path<String>,
) -> Result<Json<ModelPricing>> {
    Ok(Json(pricing::model_pricing(&ctx.market, &model).await?))
}
