//! `/v1/marketplace/gpu/...`: register, list, details, delete, heartbeat.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiContext;
use super::auth::{Caller, miner_id_header};
use super::cache::cached_json;
use super::error::ErrorBody;
use super::extract::{ApiJson, ApiQuery};
use crate::domain::GpuId;
use crate::error::{Error, Result};
use crate::market::catalogue::{self, CatalogueQuery, GpuView};
use crate::market::registry::{self, HeartbeatAck, Registered, Registration, Removed};

pub fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(list))
        .routes(routes!(details, remove))
        .routes(routes!(heartbeat))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterBody {
    pub gpu: GpuSpec,
}

/// Both the aitbc client's spellings (`name`, `memory_gb`) and the older coordinator's (`memory`,
/// `cuda_version`, `region`, `capabilities`, `miner_id`) are accepted.
#[derive(Debug, Deserialize, ToSchema)]
pub struct GpuSpec {
    pub name: Option<String>,
    pub model: Option<String>,
    pub memory_gb: Option<f64>,
    pub memory: Option<f64>,
    pub cuda_cores: Option<i64>,
    pub compute_capability: Option<String>,
    pub cuda_version: Option<String>,
    pub region: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    pub price_per_hour: Option<f64>,
    pub miner_id: Option<String>,
}

/// Register a GPU (miner role, or admin registering for `X-Miner-ID`).
#[utoipa::path(post, path = "/v1/marketplace/gpu/register", tag = "registry", request_body = RegisterBody,
    responses((status = 201, body = Registered), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn register(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<(StatusCode, Json<Registered>)> {
    let spec = body.gpu;
    let model = spec
        .name
        .or(spec.model)
        .ok_or_else(|| Error::unprocessable("gpu.name is required"))?;
    let registration = Registration {
        model,
        memory_gb: spec.memory_gb.or(spec.memory),
        cuda_version: spec.cuda_version,
        cuda_cores: spec.cuda_cores,
        compute_capability: spec.compute_capability,
        region: spec.region,
        description: spec.description,
        capabilities: spec.capabilities,
        price_per_hour: spec.price_per_hour,
        miner_id: miner_id_header(&headers).or(spec.miner_id),
    };
    let registered = registry::register(&ctx.market, &caller, registration).await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

/// Search the catalogue.
#[utoipa::path(get, path = "/v1/marketplace/gpu/list", tag = "registry", params(CatalogueQuery),
    responses((status = 200, body = [GpuView]), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(ctx): State<ApiContext>,
    uri: Uri,
    ApiQuery(query): ApiQuery<CatalogueQuery>,
) -> Result<Response> {
    let key = format!("list?{}", uri.query().unwrap_or_default());
    cached_json(&ctx, key, catalogue::list(&ctx.market, query)).await
}

/// One GPU, with its current booking while booked.
#[utoipa::path(get, path = "/v1/marketplace/gpu/{id}", tag = "registry",
    responses((status = 200, body = GpuView), (status = 404, body = ErrorBody)))]
pub async fn details(State(ctx): State<ApiContext>, Path(id): Path<GpuId>) -> Result<Response> {
    cached_json(
        &ctx,
        format!("gpu/{id}"),
        catalogue::details(&ctx.market, &id),
    )
    .await
}

/// Remove a GPU (its miner or an admin; 409 while booked).
#[utoipa::path(delete, path = "/v1/marketplace/gpu/{id}", tag = "registry",
    responses((status = 200, body = Removed), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    Path(id): Path<GpuId>,
) -> Result<Json<Removed>> {
    Ok(Json(registry::remove(&ctx.market, &caller, &id).await?))
}

/// Liveness from the GPU's miner; an offline GPU comes back online.
#[utoipa::path(post, path = "/v1/marketplace/gpu/{id}/heartbeat", tag = "registry",
    responses((status = 200, body = HeartbeatAck), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn heartbeat(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    Path(id): Path<GpuId>,
) -> Result<Json<HeartbeatAck>> {
    Ok(Json(registry::heartbeat(&ctx.market, &caller, &id).await?))
}
