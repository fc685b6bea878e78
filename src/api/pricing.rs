//! `/v1/marketplace/pricing/{model}`.

use axum::Json;
use axum::extract::{Path, State};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiContext;
use super::error::ErrorBody;
use crate::error::Result;
use crate::market::model_pricing::{self as pricing, ModelPricing};

pub fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new().routes(routes!(model_pricing))
}

/// Price statistics, history and a live quote for a GPU model.
#[utoipa::path(get, path = "/v1/marketplace/pricing/{model}", tag = "pricing", params(("model" = String, Path, description = "a GPU model or capability, matched as the list's model filter")),
    responses((status = 200, body = ModelPricing), (status = 404, body = ErrorBody)))]
pub async fn model_pricing(
    State(ctx): State<ApiContext>,
    Path(model): Path<String>,
) -> Result<Json<ModelPricing>> {
    Ok(Json(pricing::model_pricing(&ctx.market, &model).await?))
}
