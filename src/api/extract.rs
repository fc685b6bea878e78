//! Request extractors whose rejections follow the contract: malformed JSON 400, missing or mistyped
//! fields 422, body over the limit 413, always as `{"detail": ...}`.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// A JSON body. The `Content-Type` is not insisted on: command-line users often leave it out.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The whole body, within the configured limit (`DefaultBodyLimit`): over it 413, unreadable 400.
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, Error> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge("request body is larger than the configured limit".into())
        } else {
            Error::bad_request(format!(
                "cannot read request body: {}",
                rejection.body_text()
            ))
        }
    })
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::bad_request("request body must be a JSON object"));
    }
    // Syntax first: a truncated body is malformed (400) even when its start already has a field of
    // the wrong type, which on its own would be a schema error (422).
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|err| Error::bad_request(format!("malformed JSON: {err}")))?;
    serde_json::from_value(value)
        .map_err(|err| Error::unprocessable(format!("invalid request: {err}")))
}

/// Query parameters; a parameter of the wrong type is a 422.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|rejection| Error::unprocessable(rejection.body_text()))
    }
}
