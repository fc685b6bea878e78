//! The one error type of the service. Variants say what went wrong in domain terms; `api::error` maps
//! them to HTTP status codes in one place.

use crate::domain::{DurationError, UnknownStatus};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value outside its allowed range, or a request that makes no sense in the current state.
    #[error("{0}")]
    BadRequest(String),
    /// A field missing or of the wrong type.
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The caller used up its write allowance; it may retry after this many seconds.
    #[error("{detail}")]
    RateLimited {
        detail: String,
        retry_after_seconds: u64,
    },
    /// The server cannot take or finish the request now (too busy, or over its time limit).
    #[error("{detail}")]
    Unavailable {
        detail: String,
        retry_after_seconds: u64,
    },
    #[error("{0}")]
    Database(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Values that fail to parse at the edge are bad requests, worded by their type.
impl From<DurationError> for Error {
    fn from(err: DurationError) -> Self {
        Self::BadRequest(err.to_string())
    }
}

impl From<UnknownStatus> for Error {
    fn from(err: UnknownStatus) -> Self {
        Self::BadRequest(err.to_string())
    }
}

impl Error {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(message.into())
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(message.into())
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::Unprocessable(message.into())
    }

    /// The database has no connection free in time, or SQLite's write lock stayed taken past the
    /// busy timeout: the service is overloaded, not broken.
    pub fn is_overload(&self) -> bool {
        match self {
            Self::Database(StoreError::Query(sqlx::Error::PoolTimedOut)) => true,
            Self::Database(StoreError::Sqlite(err)) => {
                err.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
            }
            Self::Database(StoreError::Commit(err)) => {
                err.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
            }
            _ => false,
        }
    }
}
