//! The errors the runtime reports to its callers (admin API, CLI, start-up).
//!
//! Decisions never fail (they fall back); only loading, validating and administering modules do.

use std::path::PathBuf;
use std::str::FromStr;

use super::slot::Slot;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The slot name is not one of `pricing`, `booking-timeout`, `review-moderation`.
    #[error("unknown policy slot {0:?} (expected pricing, booking-timeout or review-moderation)")]
    UnknownSlot(String),

    /// The slot has no `file` in `policies.toml`, so it runs the built-in rules and has nowhere to
    /// write an uploaded module.
    #[error(
        "the {0} slot has no module configured in policies.toml; add a [{0}] table with a file first"
    )]
    SlotNotConfigured(Slot),

    /// The module failed a check (compile, imports, exports, contract version, sample inputs).
    #[error("{slot} module rejected: {reason}")]
    InvalidModule { slot: Slot, reason: String },

    /// Rollback asked for with no earlier good version kept.
    #[error("the {0} slot has no previous version to roll back to")]
    NoPreviousVersion(Slot),

    /// Promote asked for with no candidate that could serve (none configured, none loaded, stopped or
    /// already live).
    #[error("the {slot} slot has no candidate to promote: {reason}")]
    NoCandidate { slot: Slot, reason: String },

    /// The input given to `test_module` does not match the slot's contract.
    #[error("invalid {slot} input: {reason}")]
    InvalidInput { slot: Slot, reason: String },

    /// `policies.toml` cannot be read as a policy configuration.
    #[error("invalid {path}: {reason}")]
    Config { path: PathBuf, reason: String },

    /// A signing key file (`policy keygen`, `policy sign`) cannot be used.
    #[error("{path}: {reason}")]
    Key { path: PathBuf, reason: String },

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    /// The compile cache cannot be used as configured (its key file, its place).
    #[error("policy compile cache: {0}")]
    Cache(String),

    /// Something inside the runtime that the caller cannot fix (engine set-up, a panicked task).
    #[error("policy runtime: {0}")]
    Internal(String),
}

/// How an HTTP layer should answer a [`PolicyError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyErrorKind {
    /// 404: the slot does not exist.
    NotFound,
    /// 400: the uploaded module or input is invalid.
    BadRequest,
    /// 409: the request is valid but the slot's state does not allow it.
    Conflict,
    /// 500: logged, not echoed.
    Internal,
}

impl PolicyError {
    pub fn kind(&self) -> PolicyErrorKind {
        match self {
            Self::UnknownSlot(_) => PolicyErrorKind::NotFound,
            Self::InvalidModule { .. } | Self::InvalidInput { .. } => PolicyErrorKind::BadRequest,
            Self::SlotNotConfigured(_) | Self::NoPreviousVersion(_) | Self::NoCandidate { .. } => {
                PolicyErrorKind::Conflict
            }
            Self::Config { .. }
            | Self::Key { .. }
            | Self::Io { .. }
            | Self::Cache(_)
            | Self::Internal(_) => PolicyErrorKind::Internal,
        }
    }

    pub fn is_client_error(&self) -> bool {
        self.kind() != PolicyErrorKind::Internal
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// The admin API and the CLI name slots by string; an unknown name is a 404.
impl FromStr for Slot {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Slot::ALL
            .into_iter()
            .find(|slot| slot.as_str() == s)
            .ok_or_else(|| PolicyError::UnknownSlot(s.to_owned()))
    }
}
