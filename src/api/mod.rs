//! HTTP: one file per resource, each exposing `router()`, an `OpenApiRouter` whose routes and OpenAPI
//! operations come from the same `#[utoipa::path]` annotations. Handlers parse, call `market`, and
//! return; errors become responses in `error.rs`. Only `market` is reached from here.

pub mod admin_policies;
pub mod admin_reviews;
pub mod auth;
pub mod bookings;
pub mod cache;
pub mod decisions;
pub mod docs;
pub mod error;
pub mod extract;
pub mod forwarded;
pub mod gpus;
pub mod idempotency;
pub mod limits;
pub mod offers;
pub mod orders;
pub mod pricing;
pub mod reviews;
pub mod system;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header::X_CONTENT_TYPE_OPTIONS;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use prometheus_client::registry::Registry;
use tokio_util::task::TaskTracker;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::timeout::TimeoutLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::config::Config;
use crate::market::Market;
use crate::market::policy_admin::PolicyAdmin;

/// Shared by every handler, behind one `Arc`: axum clones the state for every handler and middleware
/// of every request, and cloning the fields one by one showed up as 5 % of a booking's CPU.
#[derive(Clone)]
pub struct ApiContext(Arc<ApiState>);

impl ApiContext {
    pub fn new(state: ApiState) -> Self {
        Self(Arc::new(state))
    }
}

impl std::ops::Deref for ApiContext {
    type Target = ApiState;

    fn deref(&self) -> &ApiState {
        &self.0
    }
}

pub struct ApiState {
    pub market: Market,
    pub auth: Arc<auth::Auth>,
    pub registry: Arc<Registry>,
    pub cache: Arc<cache::ResponseCache>,
    /// The policy runtime's admin operations; empty when the app runs fixed policies.
    pub policy_admin: PolicyAdmin,
    /// Write buckets per caller.
    pub limiter: Arc<limits::WriteLimiter>,
    /// Requests that must finish even when their client or deadline gives up (idempotent writes);
    /// shutdown waits for them.
    pub tasks: TaskTracker,
}

impl ApiState {
    pub fn config(&self) -> &Config {
        &self.market.config
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(context: ApiContext) -> Router {
    let max_body = context.config().max_body_bytes;
    let server = &context.config().server;
    // 0 = no deadline: a year stands for "never" (tokio caps far-off deadlines itself).
    let timeout = match server.request_timeout_ms {
        0 => Duration::from_secs(365 * 24 * 3600),
        ms => Duration::from_millis(ms),
    };
    // Innermost first: idempotency (reads the body, so under the body limit), the body limit, the
    // write buckets, then deadline and concurrency cap (their errors become 503 JSON), metrics, ...
    let overload = ServiceBuilder::new()
        .layer(HandleErrorLayer::<_, ()>::new(limits::overload_answer))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(
            server.max_concurrent_requests,
        ))
        .layer(TimeoutLayer::new(timeout));
    let (api, mut document) = OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        .merge(gpus::router())
        .merge(bookings::router())
        .merge(reviews::router())
        .merge(orders::router())
        .merge(pricing::router())
        .merge(offers::router())
        .merge(admin_reviews::router())
        .merge(admin_policies::router())
        .merge(decisions::router())
        .merge(system::router())
        .split_for_parts();
    docs::document_shared_errors(&mut document);
    api.merge(docs::router(document))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            context.clone(),
            idempotency::idempotent_writes,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(extract::nul_in_path))
        .layer(middleware::from_fn(error::json_rejections))
        .layer(middleware::from_fn_with_state(
            context.clone(),
            limits::limit_writes,
        ))
        .layer(overload)
        .layer(middleware::from_fn_with_state(
            context.clone(),
            record_metrics,
        ))
        .layer(middleware::from_fn_with_state(
            context.clone(),
            auth::local_mode_guard,
        ))
        .layer(middleware::from_fn(with_request_id))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let id = request
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", id, method = %request.method(), uri = %request.uri())
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        // Outermost: every answer, error or not, tells browsers not to guess its content type.
        .layer(SetResponseHeaderLayer::overriding(
            X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(context)
}

async fn record_metrics(
    State(context): State<ApiContext>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    // The route template, not the raw path, so ids do not explode the label set.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let elapsed: Duration = started.elapsed();
    context.market.metrics.observe_request(
        &method,
        &route,
        response.status().as_u16(),
        elapsed.as_secs_f64(),
    );
    response
}

/// Makes the request's `x-request-id` known to the layers below (the decision log records it).
async fn with_request_id(request: Request, next: middleware::Next) -> axum::response::Response {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    crate::request_context::scope(id, next.run(request)).await
}
