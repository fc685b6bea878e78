//! The operator's actions on the WebAssembly policy runtime (status, upload, rollback), as the API
//! reaches them: through the market, with the runtime's errors turned into the service's. Only this
//! file knows the runtime's admin surface, so the API does not follow its internals.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::policy::wasm::{PolicyError, PolicyErrorKind, PolicyRuntime, Slot};

pub use crate::policy::wasm::SlotStatus;

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

    /// Checks `module` exactly like a file change, then writes it into the policies directory and
    /// serves it. `slot` is the slot's name as the API spells it.
    pub async fn upload(&self, slot: &str, module: Vec<u8>) -> Result<SlotStatus> {
        let slot = parse_slot(slot)?;
        if module.is_empty() {
            // Worded for the API, the one caller that can send nothing.
            return Err(Error::bad_request(
                "the request body must be the module's .wasm bytes",
            ));
        }
        self.runtime()?
            .upload(slot, module)
            .await
            .map_err(policy_error)
    }

    /// Returns the slot to its previous good version.
    pub async fn rollback(&self, slot: &str) -> Result<SlotStatus> {
        let slot = parse_slot(slot)?;
        self.runtime()?.rollback(slot).await.map_err(policy_error)
    }

    fn runtime(&self) -> Result<&PolicyRuntime> {
        self.runtime.as_deref().ok_or_else(|| {
            Error::conflict("this server runs fixed policies, not the WebAssembly runtime")
        })
    }
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
