//! `/v1/marketplace/gpu/{id}/book` and `/release`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiContext;
use super::auth::Caller;
use super::error::ErrorBody;
use super::extract::ApiJson;
use crate::domain::GpuId;
use crate::error::{Error, Result};
use crate::market::booking::{self, BookRequest, BookingReceipt, Released};

pub fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(book))
        .routes(routes!(release))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct BookBody {
    /// Optional; must name the GPU in the path when given.
    pub gpu_id: Option<String>,
    /// Hours: at least 0.0003 (about one second), at most 8760 (a year).
    #[schema(minimum = 0.0003, maximum = 8760.0)]
    pub duration_hours: f64,
    #[schema(max_length = 256)]
    pub job_id: Option<String>,
}

/// Book a GPU now for `duration_hours` at the pricing policy's price, locked for the booking.
#[utoipa::path(post, path = "/v1/marketplace/gpu/{id}/book", tag = "booking", security(("api_key" = [])), params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]+$", description = "Makes the write safe to retry: a retry with the same key and body gets the first answer"), ("id" = String, Path, description = "the GPU's id")), request_body = BookBody,
    responses((status = 201, body = BookingReceipt), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn book(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    Path(id): Path<GpuId>,
    ApiJson(body): ApiJson<BookBody>,
) -> Result<(StatusCode, Json<BookingReceipt>)> {
    if body
        .gpu_id
        .as_ref()
        .is_some_and(|g| !g.is_empty() && *g != id.as_str())
    {
        return Err(Error::bad_request(
            "gpu_id in the body does not match the GPU in the path",
        ));
    }
    let request = BookRequest {
        duration_hours: body.duration_hours,
        job_id: body.job_id,
    };
    let receipt = booking::book(&ctx.market, &caller, &id, request).await?;
    Ok((StatusCode::CREATED, Json(receipt)))
}

/// End the GPU's booking early; the unused share is refunded pro rata to the second.
#[utoipa::path(post, path = "/v1/marketplace/gpu/{id}/release", tag = "booking", security(("api_key" = [])), params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]+$", description = "Makes the write safe to retry: a retry with the same key and body gets the first answer"), ("id" = String, Path, description = "the GPU's id")),
    responses((status = 200, body = Released), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn release(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    Path(id): Path<GpuId>,
) -> Result<Json<Released>> {
    Ok(Json(booking::release(&ctx.market, &caller, &id).await?))
}
