//! `/v1/admin/policies`: what each policy slot serves, uploads and rollbacks (admin).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::ApiContext;
use super::auth::Admin;
use super::error::ErrorBody;
use crate::error::{Error, Result};
use crate::market::policy_admin::SlotStatus;

/// Modules are bigger than API bodies: a Python or JavaScript component is 12-20 MB.
const MAX_MODULE_BYTES: usize = 64 * 1024 * 1024;

pub fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(
            routes!(upload)
                .layer(DefaultBodyLimit::max(MAX_MODULE_BYTES))
                .layer(middleware::from_fn(refuse_announced_oversize)),
        )
        .routes(routes!(rollback))
}

/// Refuses a module whose announced `Content-Length` is over the limit before reading any of it (the
/// body limit alone would read up to 64 MiB first). A body without the header is still cut at the
/// limit while it is read.
async fn refuse_announced_oversize(request: Request, next: Next) -> Response {
    let announced = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_MODULE_BYTES as u64) {
        return Error::PayloadTooLarge(format!(
            "a module may be at most {} MiB",
            MAX_MODULE_BYTES >> 20
        ))
        .into_response();
    }
    next.run(request).await
}

/// Every slot: file, sha256, loaded_at, calls, failures, fallbacks, last_error, limits, compiling (admin).
#[utoipa::path(get, path = "/v1/admin/policies", tag = "admin", security(("api_key" = [])),
    responses((status = 200, description = "one entry per slot"), (status = 403, body = ErrorBody)))]
pub async fn list(State(ctx): State<ApiContext>, _: Admin) -> Result<Json<Vec<SlotStatus>>> {
    Ok(Json(ctx.policy_admin.statuses()?))
}

/// Upload a module (the raw `.wasm` bytes) for a slot; it is checked exactly like a file change, then
/// written into the policies directory and served (admin).
#[utoipa::path(put, path = "/v1/admin/policies/{slot}", tag = "admin", security(("api_key" = [])), params(("slot" = String, Path, description = "pricing, booking-timeout or review-moderation")), request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses((status = 200, description = "the slot's new status"), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn upload(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    Path(slot): Path<String>,
    body: Bytes,
) -> Result<Json<SlotStatus>> {
    let status = ctx.policy_admin.upload(&slot, body.to_vec()).await?;
    tracing::info!(%slot, by = %caller.id, sha256 = ?status.sha256, "policy uploaded");
    Ok(Json(status))
}

/// Return a slot to its previous good version (admin).
#[utoipa::path(post, path = "/v1/admin/policies/{slot}/rollback", tag = "admin", security(("api_key" = [])), params(("slot" = String, Path, description = "pricing, booking-timeout or review-moderation")),
    responses((status = 200, description = "the slot's new status"), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rollback(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    Path(slot): Path<String>,
) -> Result<Json<SlotStatus>> {
    let status = ctx.policy_admin.rollback(&slot).await?;
    tracing::info!(%slot, by = %caller.id, sha256 = ?status.sha256, "policy rolled back");
    Ok(Json(status))
}
