//! `/health`, `/metrics`, `/openapi.json` and the human docs page.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::ApiContext;
use super::openapi::ApiDoc;
use crate::metrics::StatusLabel;
use crate::store::{bookings, gpus};

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/health", get(health))
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/docs", get(docs))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub database: &'static str,
}

/// `{"status": "ok"}` while the database answers; 503 otherwise.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health(State(ctx): State<ApiContext>) -> (StatusCode, Json<Health>) {
    match ctx.market.store.ping().await {
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

/// Prometheus text format.
pub async fn metrics(State(ctx): State<ApiContext>) -> Response {
    let metrics = &ctx.market.metrics;
    // Catalogue gauges come from the shared database so every replica reports the same numbers.
    match gpus::status_counts(&ctx.market.store, None).await {
        Ok(counts) => {
            for (status, value) in [
                ("available", counts.available),
                ("booked", counts.booked),
                ("offline", counts.offline),
            ] {
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
    match bookings::count_active(&ctx.market.store).await {
        Ok(active) => {
            metrics.active_bookings.set(active);
        }
        Err(err) => tracing::warn!(error = %err, "metrics: cannot count bookings"),
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

pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// A readable index of the API generated from the same OpenAPI document (no external assets, so it
/// works offline).
pub async fn docs() -> Html<String> {
    let doc = ApiDoc::openapi();
    let mut rows = String::new();
    for (path, item) in &doc.paths.paths {
        let operations = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("DELETE", &item.delete),
        ];
        for (method, operation) in operations {
            if let Some(op) = operation {
                let summary = op
                    .summary
                    .clone()
                    .or_else(|| op.description.clone())
                    .unwrap_or_default();
                let codes: Vec<&str> = op.responses.responses.keys().map(String::as_str).collect();
                rows.push_str(&format!(
                    "<tr><td><code>{method}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>\n",
                    escape(path),
                    escape(&summary),
                    codes.join(", ")
                ));
            }
        }
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title} API</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td{{padding:.3em .8em;border-bottom:1px solid #ddd}}</style>\
         </head><body><h1>{title} {version}</h1><p>Errors are JSON <code>{{\"detail\": ...}}</code>. \
         The machine-readable description is at <a href=\"/openapi.json\">/openapi.json</a>.</p>\
         <table><tr><th>method</th><th>path</th><th>what</th><th>statuses</th></tr>{rows}</table></body></html>",
        title = escape(&doc.info.title),
        version = escape(&doc.info.version),
    ))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
