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
pub mod pipeline;
pub mod pricing;
pub mod reviews;
pub mod system;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header::X_CONTENT_TYPE_OPTIONS;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;
use tokio_util::task::TaskTracker;
use tower::{Service, ServiceBuilder};
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

/// The API's routes, each under the service's own checks (`pipeline`), without the layers of
/// [`around_routes`].
pub fn router(context: ApiContext) -> Router {
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
        // The service's own checks and records, in one layer (see `pipeline`).
        .layer(middleware::from_fn_with_state(
            Arc::new(pipeline::Pipeline::new(context.clone())),
            pipeline::run,
        ))
        .with_state(context)
}

/// What wraps the whole router once, rather than each route: axum clones a route's layers for
/// every request it serves, and these need nothing the route knows. Outermost first: every answer,
/// error or not, tells browsers not to guess its content type; the request id is set (a UUID when the
/// client sent none), traced, and echoed; the body limit is set for the extractors and the idempotency
/// check that read the body.
pub fn around_routes(
    router: Router,
    max_body: usize,
) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
    ServiceBuilder::new()
        .map_response(IntoResponse::into_response)
        .layer(SetResponseHeaderLayer::overriding(
            X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
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
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(DefaultBodyLimit::max(max_body))
        .service(router)
}
