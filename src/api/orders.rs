//! `/v1/marketplace/orders`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiContext;
use super::auth::Caller;
use super::error::ErrorBody;
use super::extract::ApiQuery;
use crate::error::Result;
use crate::market::catalogue::page;
use crate::market::orders::{self, OrderView};

pub fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new().routes(routes!(list))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderParams {
    /// active, completed, cancelled or expired.
    #[param(schema_with = crate::domain::BookingStatus::filter_schema)]
    pub status: Option<String>,
    /// Default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// Order history, newest first: a client's own, a miner's GPUs', or all for an admin.
#[utoipa::path(get, path = "/v1/marketplace/orders", tag = "orders", security(("api_key" = [])), params(OrderParams),
    responses((status = 200, body = [OrderView]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    ApiQuery(params): ApiQuery<OrderParams>,
) -> Result<Json<Vec<OrderView>>> {
    let page = page(params.limit, params.offset, 100, 500)?;
    Ok(Json(
        orders::list(&ctx.market, &caller, params.status.as_deref(), page).await?,
    ))
}
