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
    let mut value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|err| Error::bad_request(format!("malformed JSON: {err}")))?;
    scrub_nul(&mut value);
    serde_json::from_value(value)
        .map_err(|err| Error::unprocessable(format!("invalid request: {err}")))
}

/// Query parameters; a parameter of the wrong type is a 422.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let parsed = if query.contains("%00") {
            // See `scrub_nul`: the same text on both backends, never a database error.
            let scrubbed: axum::http::Uri = format!("/?{}", query.replace("%00", "%EF%BF%BD"))
                .parse()
                .map_err(|_| Error::bad_request("malformed query string"))?;
            axum::extract::Query::<T>::try_from_uri(&scrubbed)
        } else {
            axum::extract::Query::<T>::try_from_uri(&parts.uri)
        };
        parsed
            .map(|q| ApiQuery(q.0))
            .map_err(|rejection| Error::unprocessable(rejection.body_text()))
    }
}

/// A whole number given as `5` or `5.0`: JSON Schema counts both as integers, serde only the first.
pub fn whole_number(value: &serde_json::Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        let float = value.as_f64()?;
        // i64::MAX is not exact in f64; stay strictly inside the range it can round-trip.
        (float.fract() == 0.0 && float.abs() < 9.0e18).then_some(float as i64)
    })
}

/// `deserialize_with` for an integer field that also takes `5.0`.
pub fn integer<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let value = <serde_json::Value as serde::Deserialize>::deserialize(deserializer)?;
    whole_number(&value)
        .ok_or_else(|| serde::de::Error::custom(format!("expected an integer, found {value}")))
}

/// `deserialize_with` for an optional integer field that also takes `5.0` (use with `#[serde(default)]`).
pub fn optional_integer<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    match <serde_json::Value as serde::Deserialize>::deserialize(deserializer)? {
        serde_json::Value::Null => Ok(None),
        value => whole_number(&value)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("expected an integer, found {value}"))),
    }
}

/// U+0000 becomes U+FFFD in every string of a request, keys included. PostgreSQL text cannot hold
/// U+0000 (SQLite can), so without this the same request would be stored on one backend and fail
/// with a database error on the other; the replacement character keeps "something was here" visible.
pub fn scrub_nul(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) if text.contains('\0') => {
            *text = text.replace('\0', "\u{FFFD}");
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(scrub_nul),
        serde_json::Value::Object(fields) => {
            if fields.keys().any(|key| key.contains('\0')) {
                *fields = std::mem::take(fields)
                    .into_iter()
                    .map(|(key, value)| (key.replace('\0', "\u{FFFD}"), value))
                    .collect();
            }
            fields.values_mut().for_each(scrub_nul);
        }
        _ => {}
    }
}

/// No resource's id contains U+0000: a path with `%00` names nothing (and must not reach PostgreSQL,
/// which cannot compare such text).
pub fn refuse_nul_in_path(uri: &axum::http::Uri) -> Result<(), Error> {
    if uri.path().contains("%00") {
        return Err(Error::not_found("no such resource"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_replaced_in_strings_and_keys() {
        let mut value = serde_json::json!({ "a\0": ["x\0y", 1], "b": { "c": "\0" } });
        scrub_nul(&mut value);
        assert_eq!(
            value,
            serde_json::json!({ "a\u{FFFD}": ["x\u{FFFD}y", 1], "b": { "c": "\u{FFFD}" } })
        );
    }
}
