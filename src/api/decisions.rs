//! `/v1/admin/decisions`: the decision log, "why was this booking priced so" (admin).

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiContext;
use super::auth::Admin;
use super::error::ErrorBody;
use super::extract::ApiQuery;
use crate::error::Result;
use crate::market::decision_log::{self, DecisionQuery, parse_rfc3339};
use crate::store::decisions::LoggedDecision;

pub fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(list_decisions))
        .routes(routes!(get_decision))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DecisionParams {
    /// pricing, booking-timeout or review-moderation.
    #[param(schema_with = slot_schema)]
    pub slot: Option<String>,
    /// live, canary or shadow.
    #[param(schema_with = role_schema)]
    pub role: Option<String>,
    /// Decisions at or after this time (RFC 3339).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Decisions before this time (RFC 3339).
    #[param(format = DateTime)]
    pub until: Option<String>,
    pub gpu_id: Option<String>,
    /// true: only decisions the fallback answered; false: only the module's own.
    pub fallback: Option<bool>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<i64>,
}

/// One of `words`, or empty for all.
fn words_schema(words: &[&str]) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(words.iter().copied().chain([""])))
        .build()
}

fn slot_schema() -> utoipa::openapi::Object {
    words_schema(&["pricing", "booking-timeout", "review-moderation"])
}

fn role_schema() -> utoipa::openapi::Object {
    words_schema(&["live", "canary", "shadow"])
}

/// One page of the decision log.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionPage {
    /// Newest first.
    pub decisions: Vec<LoggedDecision>,
    /// Pass as `cursor` for the next (older) page; null when this is the last.
    pub next_cursor: Option<i64>,
}

/// Logged policy decisions, newest first, filtered and paged (admin).
#[utoipa::path(get, path = "/v1/admin/decisions", tag = "admin", security(("api_key" = [])), params(DecisionParams),
    responses((status = 200, body = DecisionPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_decisions(
    State(ctx): State<ApiContext>,
    _: Admin,
    ApiQuery(params): ApiQuery<DecisionParams>,
) -> Result<Json<DecisionPage>> {
    let instant = |name, text: Option<String>| text.map(|t| parse_rfc3339(name, &t)).transpose();
    let query = DecisionQuery {
        slot: params.slot.filter(|s| !s.is_empty()),
        role: params.role.filter(|s| !s.is_empty()),
        since: instant("since", params.since)?,
        until: instant("until", params.until)?,
        gpu_id: params.gpu_id.filter(|s| !s.is_empty()),
        fallback: params.fallback,
        limit: params.limit,
        cursor: params.cursor,
    };
    let (decisions, next_cursor) = decision_log::list(&ctx.market, query).await?;
    Ok(Json(DecisionPage {
        decisions,
        next_cursor,
    }))
}

/// One logged decision: the module, its full input, its output, fallback, fuel and time (admin).
#[utoipa::path(get, path = "/v1/admin/decisions/{id}", tag = "admin", security(("api_key" = [])), params(("id" = String, Path, description = "a decision id (dec_...), as bookings, orders and reviews name it")),
    responses((status = 200, body = LoggedDecision), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_decision(
    State(ctx): State<ApiContext>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<LoggedDecision>> {
    Ok(Json(decision_log::get(&ctx.market, &id).await?))
}
