//! `/v1/admin/policies`: what each policy slot serves, uploads and rollbacks (admin).

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};

use super::ApiContext;
use super::auth::Caller;
use super::error::ErrorBody;
use crate::error::{Error, Result};
use crate::policy::wasm::{PolicyError, PolicyErrorKind, PolicyRuntime, Slot, SlotStatus};

/// Modules are bigger than API bodies: a Python or JavaScript component is 12-20 MB.
const MAX_MODULE_BYTES: usize = 64 * 1024 * 1024;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/v1/admin/policies", get(list))
        .route(
            "/v1/admin/policies/{slot}",
            put(upload).layer(DefaultBodyLimit::max(MAX_MODULE_BYTES)),
        )
        .route("/v1/admin/policies/{slot}/rollback", post(rollback))
}

impl From<PolicyError> for Error {
    fn from(err: PolicyError) -> Self {
        match err.kind() {
            PolicyErrorKind::NotFound => Error::NotFound(err.to_string()),
            PolicyErrorKind::BadRequest => Error::BadRequest(err.to_string()),
            PolicyErrorKind::Conflict => Error::Conflict(err.to_string()),
            PolicyErrorKind::Internal => Error::Internal(err.to_string()),
        }
    }
}

fn runtime(ctx: &ApiContext) -> Result<&PolicyRuntime> {
    ctx.policies.as_deref().ok_or_else(|| {
        Error::conflict("this server runs fixed policies, not the WebAssembly runtime")
    })
}

fn slot(name: &str) -> Result<Slot> {
    Ok(name.parse::<Slot>()?)
}

/// Every slot: file, sha256, loaded_at, calls, failures, fallbacks, last_error, limits (admin).
#[utoipa::path(get, path = "/v1/admin/policies", tag = "admin",
    responses((status = 200, description = "one entry per slot"), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
) -> Result<Json<Vec<SlotStatus>>> {
    caller.require_admin()?;
    Ok(Json(runtime(&ctx)?.statuses()))
}

/// Upload a module (the raw `.wasm` bytes) for a slot; it is checked exactly like a file change, then
/// written into the policies directory and served (admin).
#[utoipa::path(put, path = "/v1/admin/policies/{slot}", tag = "admin", request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses((status = 200, description = "the slot's new status"), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn upload(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<SlotStatus>> {
    caller.require_admin()?;
    let slot = slot(&name)?;
    if body.is_empty() {
        return Err(Error::bad_request(
            "the request body must be the module's .wasm bytes",
        ));
    }
    let status = runtime(&ctx)?.upload(slot, body.to_vec()).await?;
    tracing::info!(%slot, by = %caller.id, sha256 = ?status.sha256, "policy uploaded");
    Ok(Json(status))
}

/// Return a slot to its previous good version (admin).
#[utoipa::path(post, path = "/v1/admin/policies/{slot}/rollback", tag = "admin",
    responses((status = 200, description = "the slot's new status"), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rollback(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<Json<SlotStatus>> {
    caller.require_admin()?;
    let slot = slot(&name)?;
    let status = runtime(&ctx)?.rollback(slot).await?;
    tracing::info!(%slot, by = %caller.id, sha256 = ?status.sha256, "policy rolled back");
    Ok(Json(status))
}
