//! What every request passes through before and after its handler, as one middleware, outermost
//! first: the request id's scope, the local-mode guard, metrics, the cap on requests in flight and
//! the deadline, the write buckets, the `%00` guard, JSON rejections, and idempotent writes.
//!
//! One layer, not one per concern: axum runs a `Router::layer` middleware by cloning everything
//! inside it into a new box and boxing its future, for every request. With the checks as eight stacked
//! layers, that cloning, boxing and dropping was about a tenth of the server's CPU per book+release
//! cycle (`bench/ab.sh`: 0.89x with this one layer). Here each concern is a plain function of its
//! own module, called in order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::{ApiContext, REQUEST_ID, auth, error, extract, idempotency, limits};

pub struct Pipeline {
    context: ApiContext,
    /// Requests in flight; beyond them a request is refused at once (a queue would only turn
    /// overload into timeouts).
    slots: Semaphore,
    /// None: no deadline.
    deadline: Option<Duration>,
}

impl Pipeline {
    pub fn new(context: ApiContext) -> Self {
        let server = &context.config().server;
        let slots = Semaphore::new(server.max_concurrent_requests);
        let deadline = match server.request_timeout_ms {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        };
        Self {
            context,
            slots,
            deadline,
        }
    }

    /// The guard and metrics around the limited part; a request the guard refuses is not counted.
    async fn admitted(&self, mut request: Request, next: Next) -> Response {
        if let Err(refusal) = auth::admit(&self.context, &mut request) {
            return refusal.into_response();
        }
        let started = Instant::now();
        let method = request.method().clone();
        // The route template, not the raw path, so ids do not explode the label set.
        let route = request.extensions().get::<MatchedPath>().cloned();
        let response = self.within_limits(request, next).await;
        self.context.market.metrics.observe_request(
            method.as_str(),
            route.as_ref().map_or("unmatched", MatchedPath::as_str),
            response.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
        response
    }

    async fn within_limits(&self, request: Request, next: Next) -> Response {
        let Ok(_slot) = self.slots.try_acquire() else {
            return limits::overloaded().into_response();
        };
        let checked = self.checked(request, next);
        match self.deadline {
            None => checked.await,
            Some(deadline) => tokio::time::timeout(deadline, checked)
                .await
                .unwrap_or_else(|_| limits::past_deadline().into_response()),
        }
    }

    async fn checked(&self, request: Request, next: Next) -> Response {
        if let Err(err) = limits::take_write_token(&self.context, &request) {
            return err.into_response();
        }
        if let Err(err) = extract::refuse_nul_in_path(request.uri()) {
            return err.into_response();
        }
        let response = idempotency::idempotent_writes(&self.context, request, next).await;
        error::json_rejection(response).await
    }
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn run(State(pipeline): State<Arc<Pipeline>>, request: Request, next: Next) -> Response {
    // Known to the layers below for the request's whole run: the decision log records it.
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    crate::request_context::scope(request_id, pipeline.admitted(request, next)).await
}
