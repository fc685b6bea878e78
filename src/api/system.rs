//! `/health` (and `/v1/health`) and `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiContext;
use crate::market::system;
use crate::metrics::StatusLabel;

pub fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(health_v1))
        // Not an API operation: scraped by Prometheus, kept out of the OpenAPI document on purpose.
        .route("/metrics", get(metrics))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub database: &'static str,
}

/// `{"status": "ok"}` while the database answers; 503 otherwise.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health(State(ctx): State<ApiContext>) -> (StatusCode, Json<Health>) {
    match system::ping(&ctx.market).await {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: "ok",
                database: "ok",
            }),
        ),
        Err(err) => {
            tracing::warn!(error = %err, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "unavailable",
                    database: "unreachable",
                }),
            )
        }
    }
}

/// The same as `/health`, beside the marketplace paths.
#[utoipa::path(get, path = "/v1/health", tag = "system", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health_v1(state: State<ApiContext>) -> (StatusCode, Json<Health>) {
    health(state).await
}

/// Prometheus text format.
pub async fn metrics(State(ctx): State<ApiContext>) -> Response {
    let metrics = &ctx.market.metrics;
    // Catalogue gauges come from the shared database so every replica reports the same numbers.
    match system::gpu_counts(&ctx.market).await {
        Ok(counts) => {
            for (status, value) in counts.by_status() {
                metrics
                    .gpus
                    .get_or_create(&StatusLabel {
                        status: status.to_owned(),
                    })
                    .set(value);
            }
        }
        Err(err) => tracing::warn!(error = %err, "metrics: cannot count GPUs"),
    }
    match system::active_bookings(&ctx.market).await {
        Ok(active) => {
            metrics.active_bookings.set(active);
        }
        Err(err) => tracing::warn!(error = %err, "metrics: cannot count bookings"),
    }
    if let Some(stats) = system::write_stats(&ctx.market) {
        let saturating = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        metrics.db_commits.set(saturating(stats.groups));
        metrics.db_writes_committed.set(saturating(stats.committed));
        metrics.db_wal_pages.set(saturating(stats.log_pages));
        metrics
            .db_wal_caught_up
            .set(saturating(stats.log_caught_up));
        metrics.db_wal_writes.set(saturating(stats.log_writes));
        metrics
            .db_wal_write_calls
            .set(saturating(stats.log_write_calls));
        metrics
            .db_checkpoint_failures
            .set(saturating(stats.checkpoint_failures));
    }
    if let Some(long_reads) = system::long_reads(&ctx.market) {
        metrics
            .db_long_reads
            .set(i64::try_from(long_reads).unwrap_or(i64::MAX));
    }
    let mut body = String::new();
    if let Err(err) = prometheus_client::encoding::text::encode(&mut body, &ctx.registry) {
        tracing::error!(error = %err, "metrics encoding failed");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
