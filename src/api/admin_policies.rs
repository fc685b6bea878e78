//! `/v1/admin/policies`: what each policy slot serves, uploads and rollbacks (admin).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::ApiContext;
use super::auth::Admin;
use super::error::ErrorBody;
use super::extract::ApiQuery;
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::market::decision_log::parse_rfc3339;
use crate::market::policy_admin::{CanaryReport, ShadowReport, SlotStatus};
use crate::policy::wasm::SIGNATURE_HEADER;

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
        .routes(routes!(promote))
        .routes(routes!(shadow_report))
        .routes(routes!(canary_report))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// From this time on (RFC 3339); default: since the candidate
    /// version was loaded.
    #[param(format = DateTime)]
    pub since: Option<String>,
}

impl ReportParams {
    fn since(&self) -> Result<Option<Timestamp>> {
        self.since
            .as_deref()
            .map(|s| parse_rfc3339("since", s))
            .transpose()
    }
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
///
/// When `policies.toml` lists trusted keys (`[signing] trusted_keys`), the module must come with its
/// signature in the `X-Policy-Signature` header: the one line of the `.sig` file that
/// `gpu-market policy sign` writes. A missing, malformed, unknown-key or non-verifying signature is a
/// 400 naming the reason. The signature is written beside the module as `<file>.sig`.
#[utoipa::path(put, path = "/v1/admin/policies/{slot}", tag = "admin", security(("api_key" = [])),
    params(("slot" = String, Path, description = "pricing, booking-timeout or review-moderation"),
        ("X-Policy-Signature" = Option<String>, Header, description = "the module's signature: the line of its .sig file (`gpu-market-signature-v1 key=... sha256=... ed25519=...`); required when policies.toml lists trusted keys")),
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses((status = 200, description = "the slot's new status"), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn upload(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    Path(slot): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<SlotStatus>> {
    // Passed on as given: a signature that does not parse is refused by the runtime with its reason.
    let signature = headers
        .get(SIGNATURE_HEADER)
        .map(|value| value.as_bytes().to_vec());
    let status = ctx
        .policy_admin
        .upload(&slot, body.to_vec(), signature)
        .await?;
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

/// Make the slot's running candidate (the canary, else the shadow) its live version, atomically:
/// decisions already started finish on the version they started with; the replaced version goes to
/// the rollback history (admin).
#[utoipa::path(post, path = "/v1/admin/policies/{slot}/promote", tag = "admin", security(("api_key" = [])), params(("slot" = String, Path, description = "pricing, booking-timeout or review-moderation")),
    responses((status = 200, description = "the slot's new status"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn promote(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    Path(slot): Path<String>,
) -> Result<Json<SlotStatus>> {
    let status = ctx.policy_admin.promote(&slot).await?;
    tracing::info!(%slot, by = %caller.id, sha256 = ?status.sha256, "policy candidate promoted");
    Ok(Json(status))
}

/// The shadow's answers beside the live ones on the same inputs: agreement, price differences and
/// revenue on the bookings that happened (pricing), a confusion table (the other slots), and the
/// shadow's failures by kind (admin).
#[utoipa::path(get, path = "/v1/admin/policies/{slot}/shadow", tag = "admin", security(("api_key" = [])), params(("slot" = String, Path, description = "pricing, booking-timeout or review-moderation"), ReportParams),
    responses((status = 200, body = ShadowReport), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn shadow_report(
    State(ctx): State<ApiContext>,
    _: Admin,
    Path(slot): Path<String>,
    ApiQuery(params): ApiQuery<ReportParams>,
) -> Result<Json<ShadowReport>> {
    let since = params.since()?;
    Ok(Json(
        ctx.policy_admin
            .shadow_report(&ctx.market, &slot, since)
            .await?,
    ))
}

/// The canary's arm beside the live arm over the same period: decisions, failure rate and kinds,
/// prices and revenue (pricing) or verdicts (the other slots) (admin).
#[utoipa::path(get, path = "/v1/admin/policies/{slot}/canary", tag = "admin", security(("api_key" = [])), params(("slot" = String, Path, description = "pricing, booking-timeout or review-moderation"), ReportParams),
    responses((status = 200, body = CanaryReport), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn canary_report(
    State(ctx): State<ApiContext>,
    _: Admin,
    Path(slot): Path<String>,
    ApiQuery(params): ApiQuery<ReportParams>,
) -> Result<Json<CanaryReport>> {
    let since = params.since()?;
    Ok(Json(
        ctx.policy_admin
            .canary_report(&ctx.market, &slot, since)
            .await?,
    ))
}
