//! The operator's actions on the WebAssembly policy runtime (status, upload, rollback), as the API
//! reaches them: through the market, with the runtime's errors turned into the service's. Only this
//! file knows the runtime's admin surface, so the API does not follow its internals.

use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use super::Market;
use super::comparison::{self, ArmsReport, Comparison};
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::policy::wasm::{CandidateRole, PolicyError, PolicyErrorKind, PolicyRuntime, Slot};
use crate::store::decisions;

pub use crate::policy::wasm::{CandidateStatus, SlotStatus};

/// Decisions a report reads at most (the newest).
pub const MAX_REPORT_DECISIONS: u32 = 200_000;

/// `GET /v1/admin/policies/{slot}/shadow`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShadowReport {
    pub slot: String,
    #[schema(value_type = Object)]
    pub shadow: CandidateStatus,
    /// The report covers decisions from here on (default: since the shadow version was loaded).
    #[schema(value_type = String, format = DateTime)]
    pub since: Timestamp,
    pub comparison: Comparison,
}

/// `GET /v1/admin/policies/{slot}/canary`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CanaryReport {
    pub slot: String,
    #[schema(value_type = Object)]
    pub canary: CandidateStatus,
    #[schema(value_type = String, format = DateTime)]
    pub since: Timestamp,
    pub arms: ArmsReport,
}

/// The runtime's admin view; empty when the app runs fixed policies (tests, embedders).
#[derive(Clone, Default)]
pub struct PolicyAdmin {
    runtime: Option<Arc<PolicyRuntime>>,
}

impl PolicyAdmin {
    pub fn new(runtime: Option<Arc<PolicyRuntime>>) -> Self {
        Self { runtime }
    }

    /// Every slot: file, sha256, loaded_at, calls, failures, fallbacks, last_error, limits, compiling.
    pub fn statuses(&self) -> Result<Vec<SlotStatus>> {
        Ok(self.runtime()?.statuses())
    }

    /// Checks `module` exactly like a file change, then writes it (and `signature`, the content of
    /// its signature file, beside it) into the policies directory and serves it. `slot` is the slot's
    /// name as the API spells it.
    pub async fn upload(
        &self,
        slot: &str,
        module: Vec<u8>,
        signature: Option<Vec<u8>>,
    ) -> Result<SlotStatus> {
        let slot = parse_slot(slot)?;
        if module.is_empty() {
            // Worded for the API, the one caller that can send nothing.
            return Err(Error::bad_request(
                "the request body must be the module's .wasm bytes",
            ));
        }
        self.runtime()?
            .upload(slot, module, signature)
            .await
            .map_err(policy_error)
    }

    /// Returns the slot to its previous good version.
    pub async fn rollback(&self, slot: &str) -> Result<SlotStatus> {
        let slot = parse_slot(slot)?;
        self.runtime()?.rollback(slot).await.map_err(policy_error)
    }

    /// Makes the slot's running candidate (canary, else shadow) live.
    pub async fn promote(&self, slot: &str) -> Result<SlotStatus> {
        let slot = parse_slot(slot)?;
        self.runtime()?.promote(slot).await.map_err(policy_error)
    }

    /// The slot's candidate in `role`, or 404.
    fn candidate(&self, slot: &str, role: CandidateRole) -> Result<CandidateStatus> {
        let slot = parse_slot(slot)?;
        let status = self.runtime()?.status(slot);
        let candidate = match role {
            CandidateRole::Shadow => status.shadow,
            CandidateRole::Canary => status.canary,
        };
        candidate.ok_or_else(|| {
            Error::not_found(format!(
                "the {slot} slot has no {} (name one in policies.toml: [{slot}.{}] file = ...)",
                role.as_str(),
                role.as_str()
            ))
        })
    }

    /// The shadow's answers beside the served ones since `since` (default: since it was loaded).
    pub async fn shadow_report(
        &self,
        market: &Market,
        slot: &str,
        since: Option<Timestamp>,
    ) -> Result<ShadowReport> {
        let shadow = self.candidate(slot, CandidateRole::Shadow)?;
        let since = since.unwrap_or_else(|| loaded_since(&shadow));
        let pairs = match &shadow.sha256 {
            Some(sha) => {
                decisions::shadow_pairs(&market.store, slot, sha, since, MAX_REPORT_DECISIONS)
                    .await?
            }
            None => Vec::new(),
        };
        let comparison =
            comparison::compare(pairs.iter().map(|p| (&p.live, &p.shadow, p.booked_hours)));
        Ok(ShadowReport {
            slot: slot.to_owned(),
            shadow,
            since,
            comparison,
        })
    }

    /// The live and canary arms side by side since `since` (default: since the canary was loaded).
    pub async fn canary_report(
        &self,
        market: &Market,
        slot: &str,
        since: Option<Timestamp>,
    ) -> Result<CanaryReport> {
        let canary = self.candidate(slot, CandidateRole::Canary)?;
        let since = since.unwrap_or_else(|| loaded_since(&canary));
        let served = decisions::served(&market.store, slot, since, MAX_REPORT_DECISIONS).await?;
        Ok(CanaryReport {
            slot: slot.to_owned(),
            canary,
            since,
            arms: comparison::arms(&served),
        })
    }

    fn runtime(&self) -> Result<&PolicyRuntime> {
        self.runtime.as_deref().ok_or_else(|| {
            Error::conflict("this server runs fixed policies, not the WebAssembly runtime")
        })
    }
}

fn loaded_since(candidate: &CandidateStatus) -> Timestamp {
    candidate.loaded_at.map_or_else(Timestamp::default, |t| {
        Timestamp::from_micros(t.timestamp_micros())
    })
}

fn parse_slot(name: &str) -> Result<Slot> {
    name.parse::<Slot>().map_err(policy_error)
}

/// The runtime says what kind of failure it had; the API maps the service's error to a status.
fn policy_error(err: PolicyError) -> Error {
    match err.kind() {
        PolicyErrorKind::NotFound => Error::NotFound(err.to_string()),
        PolicyErrorKind::BadRequest => Error::BadRequest(err.to_string()),
        PolicyErrorKind::Conflict => Error::Conflict(err.to_string()),
        PolicyErrorKind::Internal => Error::Internal(err.to_string()),
    }
}
