//! The older coordinator's views: offers, stats, bids, sync-offers, miner-offers.

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
use super::extract::{ApiJson, ApiQuery};
use crate::domain::BidId;
use crate::error::Result;
use crate::market::catalogue::page;
use crate::market::offers::{
    self, BidAccepted, BidRequest, BidView, MarketStats, OfferView, SyncReport,
};

pub fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(list_offers))
        .routes(routes!(miner_offers))
        .routes(routes!(stats))
        .routes(routes!(place_bid, list_bids))
        .routes(routes!(cancel_bid))
        .routes(routes!(sync_offers))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OfferParams {
    pub miner_id: Option<String>,
    /// Default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// Every GPU in the catalogue as an offer of one unit at its current price.
#[utoipa::path(get, path = "/v1/marketplace/offers", tag = "offers", params(OfferParams),
    responses((status = 200, body = [OfferView])))]
pub async fn list_offers(
    State(ctx): State<ApiContext>,
    ApiQuery(params): ApiQuery<OfferParams>,
) -> Result<Json<Vec<OfferView>>> {
    Ok(Json(
        offers::offers(
            &ctx.market,
            params.miner_id,
            page(params.limit, params.offset, 100, 500)?,
        )
        .await?,
    ))
}

/// Offers of one miner (`miner_id`), or of all miners.
#[utoipa::path(get, path = "/v1/marketplace/miner-offers", tag = "offers", params(OfferParams),
    responses((status = 200, body = [OfferView])))]
pub async fn miner_offers(
    State(ctx): State<ApiContext>,
    ApiQuery(params): ApiQuery<OfferParams>,
) -> Result<Json<Vec<OfferView>>> {
    list_offers(State(ctx), ApiQuery(params)).await
}

/// Marketplace totals.
#[utoipa::path(get, path = "/v1/marketplace/stats", tag = "offers", responses((status = 200, body = MarketStats)))]
pub async fn stats(State(ctx): State<ApiContext>) -> Result<Json<MarketStats>> {
    Ok(Json(offers::stats(&ctx.market).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct BidBody {
    pub provider: Option<String>,
    pub gpu_model: Option<String>,
    #[serde(deserialize_with = "super::extract::integer")]
    #[schema(minimum = 1, maximum = 10000)]
    pub capacity: i64,
    /// AITBC per hour.
    #[schema(minimum = 0.000001, maximum = 10000.0)]
    pub price: f64,
    #[schema(max_length = 2000)]
    pub notes: Option<String>,
}

/// Place a bid for capacity.
#[utoipa::path(post, path = "/v1/marketplace/bids", tag = "offers", security(("api_key" = [])), request_body = BidBody,
    responses((status = 202, body = BidAccepted), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn place_bid(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<BidBody>,
) -> Result<(StatusCode, Json<BidAccepted>)> {
    let bid = BidRequest {
        provider: body.provider,
        gpu_model: body.gpu_model,
        capacity: body.capacity,
        price: body.price,
        notes: body.notes,
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(offers::place_bid(&ctx.market, &caller, bid).await?),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BidParams {
    /// pending, accepted or cancelled.
    #[param(value_type = Option<crate::domain::BidStatus>, inline)]
    pub status: Option<String>,
    /// Default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// Bids newest first: the caller's own, or everyone's for an admin.
#[utoipa::path(get, path = "/v1/marketplace/bids", tag = "offers", security(("api_key" = [])), params(BidParams),
    responses((status = 200, body = [BidView]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_bids(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    ApiQuery(params): ApiQuery<BidParams>,
) -> Result<Json<Vec<BidView>>> {
    let page = page(params.limit, params.offset, 100, 500)?;
    Ok(Json(
        offers::list_bids(&ctx.market, &caller, params.status.as_deref(), page).await?,
    ))
}

/// Withdraw an open bid (its client or an admin); it stops counting in `activeBids`.
#[utoipa::path(post, path = "/v1/marketplace/bids/{id}/cancel", tag = "offers", security(("api_key" = [])),
    params(("id" = String, Path, description = "The bid's id (`bid_...`).")),
    responses((status = 200, body = BidView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel_bid(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    Path(id): Path<BidId>,
) -> Result<Json<BidView>> {
    Ok(Json(offers::cancel_bid(&ctx.market, &caller, &id).await?))
}

/// Recompute every offer's price from the registry now (admin).
#[utoipa::path(post, path = "/v1/marketplace/sync-offers", tag = "offers", security(("api_key" = [])),
    responses((status = 200, body = SyncReport), (status = 403, body = ErrorBody)))]
pub async fn sync_offers(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
) -> Result<Json<SyncReport>> {
    Ok(Json(offers::sync(&ctx.market, &caller).await?))
}
