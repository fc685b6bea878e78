//! The one place where errors become HTTP responses: `{"detail": "..."}` with the status the contract
//! gives. Database and internal errors are logged with detail and shown to the client as a bare 500.

use axum::Json;
use axum::body::Body;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Error;

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub detail: String,
}

pub fn status_of(error: &Error) -> StatusCode {
    match error {
        Error::BadRequest(_) => StatusCode::BAD_REQUEST,
        Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        error if error.is_overload() => StatusCode::SERVICE_UNAVAILABLE,
        Error::Database(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = status_of(&self);
        let detail = match &self {
            error if error.is_overload() => {
                tracing::warn!(error = %self, "database pool exhausted");
                "the service is overloaded; retry shortly".to_owned()
            }
            Error::Database(_) | Error::Internal(_) => {
                tracing::error!(error = %self, "request failed");
                "internal server error".to_owned()
            }
            other => other.to_string(),
        };
        let retry_after = match &self {
            Error::RateLimited {
                retry_after_seconds,
                ..
            }
            | Error::Unavailable {
                retry_after_seconds,
                ..
            } => Some(*retry_after_seconds),
            error if error.is_overload() => Some(1),
            _ => None,
        };
        let mut response = (status, Json(ErrorBody { detail })).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

pub async fn not_found() -> Error {
    Error::not_found("no such endpoint")
}

pub async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(ErrorBody {
            detail: "method not allowed on this endpoint".into(),
        }),
    )
        .into_response()
}

/// Longest framework rejection text kept as a `detail`.
const MAX_REJECTION_TEXT: usize = 16 * 1024;

/// Rewrites every error response that is not JSON yet (the rejections axum and tower produce
/// themselves: a body over the limit, an unreadable body, a bad path parameter...) as
/// `{"detail": <its text>}`, keeping its status and other headers, so that every error follows the
/// contract's shape.
pub async fn json_rejection(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_REJECTION_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let detail = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase()
    } else {
        text
    };
    let body = serde_json::to_vec(&ErrorBody { detail }).unwrap_or_default();
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}
