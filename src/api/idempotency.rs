//! `Idempotency-Key` on book, release, register and review: a retry with the same key and the same
//! body (same caller) gets the first answer again, status and body, with `Idempotent-Replayed: true`;
//! the same key with another body or endpoint is a 422. Keys live in the database, so this holds
//! across replicas and restarts, and expire after `server.idempotency_ttl_seconds`.
//!
//! The first request claims its key with an INSERT before it runs. A second request with a key whose
//! first request is still running waits for its answer (polling) up to the request deadline, then
//! gets 409 "still in progress". The claimed request runs in a task of its own, so that a client
//! that hangs up, or the request deadline, does not cut a write in half: its answer is stored
//! either way and a retry gets it. Answers of 5xx are not kept (the retry runs again).

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::ApiContext;
use super::auth::api_key;
use super::extract::read_body;
use crate::error::Error;
use crate::market::idempotency::{self, Claim, Fingerprint};

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Set on an answer that is a stored first answer rather than this request's own.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
const MAX_KEY_CHARS: usize = 255;
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long a duplicate waits for the first request when the server has no request deadline.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// The writes that honour the header (route templates).
const IDEMPOTENT_ROUTES: [&str; 4] = [
    "/v1/marketplace/gpu/{id}/book",
    "/v1/marketplace/gpu/{id}/release",
    "/v1/marketplace/gpu/register",
    "/v1/marketplace/gpu/{id}/reviews",
];

pub async fn idempotent_writes(ctx: &ApiContext, request: Request, next: Next) -> Response {
    let applies = request.method() == Method::POST
        && request
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|route| IDEMPOTENT_ROUTES.contains(&route.as_str()));
    if !applies || !request.headers().contains_key(IDEMPOTENCY_KEY_HEADER) {
        return next.run(request).await;
    }
    let key = match key_of(request.headers()) {
        Ok(key) => key,
        Err(err) => return err.into_response(),
    };
    // Keys belong to their caller; a request without a valid key gets its 401 from the handler.
    let Ok(principal) = ctx.auth.authenticate(api_key(request.headers())) else {
        return next.run(request).await;
    };
    let principal = principal.id.to_string();
    let (parts, body) = request.into_parts();
    let bytes = match read_body(Request::from_parts(parts.clone(), body), ctx).await {
        Ok(bytes) => bytes,
        Err(err) => return err.into_response(),
    };
    let fingerprint = Fingerprint {
        request: format!("{} {}", parts.method, parts.uri.path()),
        body_sha256: body_hash(&bytes),
    };
    let wait = match ctx.config().server.request_timeout_ms {
        0 => DEFAULT_WAIT,
        ms => Duration::from_millis(ms),
    };
    let deadline = Instant::now() + wait;
    loop {
        let existing = match idempotency::claim(&ctx.market, &principal, &key, &fingerprint).await {
            Err(err) => return err.into_response(),
            Ok(Claim::Claimed) => {
                let request = Request::from_parts(parts, Body::from(bytes));
                return run_claimed(ctx.clone(), principal, key, request, next).await;
            }
            Ok(Claim::Existing(existing)) => existing,
        };
        if existing.fingerprint != fingerprint {
            return Error::unprocessable(format!(
                "Idempotency-Key {key:?} was already used for a different request ({}); use a new key \
                 for a new request",
                existing.fingerprint.request
            ))
            .into_response();
        }
        if let Some((status, body)) = existing.response {
            return replay(status, body);
        }
        // The first request still runs: wait for its answer.
        loop {
            if Instant::now() >= deadline {
                return Error::conflict(format!(
                    "a request with Idempotency-Key {key:?} is still in progress; retry shortly"
                ))
                .into_response();
            }
            tokio::time::sleep(POLL_INTERVAL).await;
            match idempotency::find(&ctx.market, &principal, &key).await {
                Err(err) => return err.into_response(),
                Ok(Some(existing)) => {
                    if let Some((status, body)) = existing.response {
                        return replay(status, body);
                    }
                }
                // Released (the first attempt failed on the server's side): claim it again.
                Ok(None) => break,
            }
        }
    }
}

/// Runs the request that owns the key and stores its answer.
async fn run_claimed(
    ctx: ApiContext,
    principal: String,
    key: String,
    request: Request,
    next: Next,
) -> Response {
    let market = ctx.market.clone();
    let task = ctx.tasks.spawn(async move {
        let response = next.run(request).await;
        let (parts, body) = response.into_parts();
        let bytes = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => bytes,
            Err(err) => {
                let _ = idempotency::release(&market, &principal, &key).await;
                return Error::Internal(format!("cannot read the response: {err}")).into_response();
            }
        };
        let text = std::str::from_utf8(&bytes).ok();
        let stored = match text {
            Some(text) if !parts.status.is_server_error() => {
                idempotency::complete(&market, &principal, &key, parts.status.as_u16(), text).await
            }
            _ => idempotency::release(&market, &principal, &key).await,
        };
        if let Err(err) = stored {
            // The answer still goes out; a retry finds the claim stale later and runs again.
            tracing::warn!(error = %err, "cannot store the answer of an idempotent request");
        }
        Response::from_parts(parts, Body::from(bytes))
    });
    match task.await {
        Ok(response) => response,
        Err(err) => {
            Error::Internal(format!("idempotent request task failed: {err}")).into_response()
        }
    }
}

fn replay(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}

/// 1 to 255 visible ASCII characters.
fn key_of(headers: &HeaderMap) -> Result<String, Error> {
    let valid = headers
        .get(IDEMPOTENCY_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_CHARS)
        .filter(|k| k.bytes().all(|b| b.is_ascii_graphic()));
    valid.map(str::to_owned).ok_or_else(|| {
        Error::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_CHARS} visible ASCII characters"
        ))
    })
}

/// SHA-256 of the body; of its canonical form when it is JSON, so spacing and key order do not make
/// a retry "different".
fn body_hash(bytes: &[u8]) -> String {
    let canonical = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|value| serde_json::to_vec(&value).ok());
    let digest = Sha256::digest(canonical.as_deref().unwrap_or(bytes));
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_hash_the_same_whatever_their_spacing() {
        assert_eq!(
            body_hash(br#"{"a": 1, "b": 2}"#),
            body_hash(br#"{"a":1,"b":2}"#)
        );
        assert_eq!(
            body_hash(br#"{"b": 2, "a": 1}"#),
            body_hash(br#"{"a":1,"b":2}"#)
        );
        assert_ne!(body_hash(br#"{"a": 1}"#), body_hash(br#"{"a": 2}"#));
        assert_eq!(body_hash(b""), body_hash(b""));
    }
}
