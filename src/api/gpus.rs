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
    #[schema(schema_with = gpu_spec_schema)]
    pub gpu: GpuSpec,
}

/// Both the aitbc client's spellings (`name`, `memory_gb`) and the older coordinator's (`memory`,
/// `cuda_version`, `region`, `capabilities`, `miner_id`) are accepted. The ranges are the registry's
/// (`market::registry`), stated here so that clients and fuzzers see them.
#[derive(Debug, Deserialize, ToSchema)]
pub struct GpuSpec {
    /// The GPU model; 1-128 characters, not only spaces. `name` or `model` is required.
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    pub name: Option<String>,
    /// The older spelling of `name`, used when `name` is absent.
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    pub model: Option<String>,
    #[schema(minimum = 0.0, maximum = 4096.0)]
    pub memory_gb: Option<f64>,
    /// The older spelling of `memory_gb`.
    #[schema(minimum = 0.0, maximum = 4096.0)]
    pub memory: Option<f64>,
    #[serde(default, deserialize_with = "super::extract::optional_integer")]
    #[schema(minimum = 0)]
    pub cuda_cores: Option<i64>,
    #[schema(max_length = 2000)]
    pub compute_capability: Option<String>,
    #[schema(max_length = 2000)]
    pub cuda_version: Option<String>,
    #[schema(max_length = 2000)]
    pub region: Option<String>,
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(schema_with = capabilities_schema)]
    pub capabilities: Vec<String>,
    /// AITBC per hour; when absent, the market's recommended price for the model (400 when it has none).
    #[schema(minimum = 0.000001, maximum = 10000.0)]
    pub price_per_hour: Option<f64>,
    pub miner_id: Option<String>,
}

/// At most 64 capability names of 1-128 characters.
fn capabilities_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(128)),
        )
        .max_items(Some(64))
        .build()
}

/// `GpuSpec` plus the rule a derive cannot state: `name` or `model` must be a string.
fn gpu_spec_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::PartialSchema;
    use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, ObjectBuilder, Type};
    let given = |field: &str| {
        ObjectBuilder::new()
            .property(field, ObjectBuilder::new().schema_type(Type::String))
            .required(field)
    };
    AllOfBuilder::new()
        .item(GpuSpec::schema())
        .item(AnyOfBuilder::new().item(given("name")).item(given("model")))
        .build()
        .into()
}

/// Register a GPU (miner role, or admin registering for `X-Miner-ID`).
#[utoipa::path(post, path = "/v1/marketplace/gpu/register", tag = "registry", security(("api_key" = [])), params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]+$", description = "Makes the write safe to retry: a retry with the same key and body gets the first answer")), request_body = RegisterBody,
    responses((status = 201, body = Registered), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn register(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<(StatusCode, Json<Registered>)> {
    let spec = body.gpu;
    // With both spellings given the newer one wins, but the other must be valid too: the API
    // document states each field's range on its own.
    if let (Some(_), Some(model)) = (&spec.name, &spec.model) {
        registry::check_model_name("model", model)?;
    }
    if let (Some(_), Some(memory)) = (spec.memory_gb, spec.memory) {
        registry::check_memory("memory", memory)?;
    }
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
#[utoipa::path(get, path = "/v1/marketplace/gpu/{id}", tag = "registry", params(("id" = String, Path, description = "the GPU's id")),
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
#[utoipa::path(delete, path = "/v1/marketplace/gpu/{id}", tag = "registry", security(("api_key" = [])), params(("id" = String, Path, description = "the GPU's id")),
    responses((status = 200, body = Removed), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    Path(id): Path<GpuId>,
) -> Result<Json<Removed>> {
    Ok(Json(registry::remove(&ctx.market, &caller, &id).await?))
}

/// Liveness from the GPU's miner; an offline GPU comes back online.
#[utoipa::path(post, path = "/v1/marketplace/gpu/{id}/heartbeat", tag = "registry", security(("api_key" = [])), params(("id" = String, Path, description = "the GPU's id")),
    responses((status = 200, body = HeartbeatAck), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn heartbeat(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    Path(id): Path<GpuId>,
) -> Result<Json<HeartbeatAck>> {
    Ok(Json(registry::heartbeat(&ctx.market, &caller, &id).await?))
}
