//! [`PolicyRuntime`]: the three slots served from a policies directory. Construction, the admin
//! entry points (which serialize and pick the slot's [`SlotAdmin`] view), and the
//! [`Policies`] impl (which reaches each slot's typed cell).

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::policy::{
    ModerationDecision, ModerationRequest, Policies, PriceQuote, PricingRequest, TimeoutDecision,
    TimeoutRequest,
};

use super::admin::{Cells, SlotAdmin};
use super::cache::ArtifactCache;
use super::cell::SlotStatus;
use super::config::PoliciesConfig;
use super::engine::engine;
use super::error::PolicyError;
use super::host::Host;
use super::slot::Slot;
use super::watch;

/// Serves the three policy slots from WebAssembly modules in a directory. Implements
/// [`Policies`]; share it as `Arc<PolicyRuntime>`.
pub struct PolicyRuntime {
    host: Host,
    cells: Cells,
    /// Serializes reloads, uploads and rollbacks: each sees the state the previous one left.
    admin: tokio::sync::Mutex<()>,
    /// Why the last attempt to read `policies.toml` failed; cleared by the next good read.
    config_error: Mutex<Option<String>>,
}

impl PolicyRuntime {
    /// Loads every configured slot from `policies_dir` and starts watching it until `shutdown`.
    ///
    /// A slot missing from `policies.toml` (or no `policies.toml` at all) uses the built-in rules. A
    /// configured module that fails its checks does not stop the start: its slot answers with the
    /// fallback, and `statuses()` shows why, until a valid version arrives. An unreadable
    /// `policies.toml` is an error.
    pub async fn start(
        policies_dir: &Path,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, PolicyError> {
        Self::start_with_cache(policies_dir, None, shutdown).await
    }

    /// [`start`](Self::start) with a compile cache: modules this host compiled before (another
    /// run, an earlier version of a slot) load in milliseconds instead of compiling again.
    pub async fn start_with_cache(
        policies_dir: &Path,
        cache: Option<ArtifactCache>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, PolicyError> {
        let runtime = Self::start_unwatched_with_cache(policies_dir, cache).await?;
        let weak = Arc::downgrade(&runtime);
        watch::spawn(&runtime.host.dir, shutdown, move || {
            let runtime = weak.upgrade()?;
            Some(async move { runtime.reload().await })
        })?;
        Ok(runtime)
    }

    /// The same runtime without a directory watcher (tests, one-shot tools); call
    /// [`reload`](Self::reload) to pick up changes.
    pub async fn start_unwatched(policies_dir: &Path) -> Result<Arc<Self>, PolicyError> {
        Self::start_unwatched_with_cache(policies_dir, None).await
    }

    pub async fn start_unwatched_with_cache(
        policies_dir: &Path,
        cache: Option<ArtifactCache>,
    ) -> Result<Arc<Self>, PolicyError> {
        for slot in Slot::ALL {
            engine(slot)?;
        }
        let dir = std::fs::canonicalize(policies_dir)
            .map_err(|e| PolicyError::io("opening", policies_dir, e))?;
        // The policies directory holds sources that anyone deploying a policy writes; compiled code
        // there could be swapped in by them.
        if let Some(cache) = &cache
            && cache.dir().starts_with(&dir)
        {
            return Err(PolicyError::Cache(format!(
                "{} may not lie inside the policies directory {}",
                cache.dir().display(),
                dir.display()
            )));
        }
        let runtime = Arc::new(Self {
            host: Host::new(dir, cache.map(Arc::new)),
            cells: Cells::default(),
            admin: tokio::sync::Mutex::new(()),
            config_error: Mutex::default(),
        });
        let config = PoliciesConfig::load(policies_dir)?;
        {
            let _admin = runtime.admin.lock().await;
            runtime.apply(config).await;
        }
        Ok(runtime)
    }

    pub fn policies_dir(&self) -> &Path {
        &self.host.dir
    }

    fn config_error(&self) -> Option<String> {
        self.config_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_config_error(&self, error: Option<String>) {
        *self.config_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    fn slot(&self, slot: Slot) -> &dyn SlotAdmin {
        self.cells.admin(slot)
    }

    pub fn statuses(&self) -> Vec<SlotStatus> {
        Slot::ALL
            .into_iter()
            .map(|slot| self.status(slot))
            .collect()
    }

    pub fn status(&self, slot: Slot) -> SlotStatus {
        self.slot(slot).status(self.config_error().as_deref())
    }

    /// Registers the `policy_*` metrics (calls, failures by kind, fallbacks, call duration and fuel
    /// histograms per slot and version; reloads and rejected reloads per slot).
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.host.metrics.register(registry);
    }

    /// Validates `bytes` as the slot's new module exactly as a file change would be, then writes it
    /// into the policies directory (temp file + rename) and puts it in service. `signature` is the
    /// content of its signature file (required when `policies.toml` lists trusted keys); it is
    /// written beside the module.
    pub async fn upload(
        &self,
        slot: Slot,
        bytes: Vec<u8>,
        signature: Option<Vec<u8>>,
    ) -> Result<SlotStatus, PolicyError> {
        let _admin = self.admin.lock().await;
        let uploaded = self.slot(slot).upload(&self.host, bytes, signature).await;
        release_freed_memory();
        uploaded?;
        Ok(self.status(slot))
    }

    /// Puts the previous good version back in service (and back into the policies directory, so a
    /// restart or reload keeps it). It is re-checked against the slot's current settings first.
    pub async fn rollback(&self, slot: Slot) -> Result<SlotStatus, PolicyError> {
        let _admin = self.admin.lock().await;
        let rolled_back = self.slot(slot).rollback(&self.host).await;
        release_freed_memory();
        rolled_back?;
        Ok(self.status(slot))
    }

    /// Makes the slot's running candidate (canary first, else shadow) its live version, atomically.
    pub async fn promote(&self, slot: Slot) -> Result<SlotStatus, PolicyError> {
        let _admin = self.admin.lock().await;
        let role = self.slot(slot).promote(&self.host).await?;
        tracing::info!(%slot, role = role.as_str(), "candidate promoted");
        Ok(self.status(slot))
    }

    /// Sends every later decision to the decision log's writer (the server attaches it once).
    pub fn log_decisions_to(
        &self,
        writer: tokio::sync::mpsc::Sender<crate::domain::DecisionEntry>,
    ) {
        if !self.host.decisions.attach(writer) {
            tracing::warn!("the decision log was attached twice; the first writer keeps it");
        }
    }

    /// Re-reads `policies.toml` and the configured modules now, slot by slot. A slot whose file and
    /// settings are unchanged is left alone; a candidate failing any check is rejected and the slot's
    /// current version keeps serving. The watcher calls this; it is public for tests and signals.
    pub async fn reload(&self) {
        let _admin = self.admin.lock().await;
        match PoliciesConfig::load(&self.host.dir) {
            Ok(config) => {
                self.set_config_error(None);
                self.apply(config).await;
            }
            Err(e) => {
                tracing::warn!("policies.toml rejected, every slot keeps its current version: {e}");
                for slot in Slot::ALL {
                    if self.slot(slot).is_configured() {
                        self.host.metrics.reload(slot, false);
                    }
                }
                self.set_config_error(Some(e.to_string()));
            }
        }
    }

    /// Brings every slot in line with `config`. The caller holds the admin lock.
    async fn apply(&self, mut config: PoliciesConfig) {
        self.host.set_trusted_keys(config.trusted_keys.clone());
        for slot in Slot::ALL {
            let desired = config.slots.remove(&slot);
            let candidates = config.candidates.remove(&slot).unwrap_or_default();
            self.slot(slot).reload(&self.host, desired).await;
            self.slot(slot)
                .reload_candidates(&self.host, candidates)
                .await;
        }
    }
}

/// Hands memory freed by an upload or rollback back to the operating system now rather than after
/// the allocator's purge delay. Candidates are whole module files (tens of MB for an
/// interpreter-based module) copied a few times while they are checked. (Not after the watcher's
/// reloads: they come from the operator's own files, and often.)
fn release_freed_memory() {
    // SAFETY: mi_collect only frees and purges memory the allocator no longer hands out.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

#[async_trait]
impl Policies for PolicyRuntime {
    async fn quote(&self, request: PricingRequest) -> PriceQuote {
        self.cells.pricing.decide(&self.host, &request).await.output
    }

    async fn quote_batch(&self, requests: Vec<PricingRequest>) -> Vec<PriceQuote> {
        let decided = self.cells.pricing.decide_batch(&self.host, &requests).await;
        decided.into_iter().map(|d| d.output).collect()
    }

    async fn booking_timeout(&self, request: TimeoutRequest) -> TimeoutDecision {
        self.cells.timeout.decide(&self.host, &request).await.output
    }

    async fn moderate(&self, request: ModerationRequest) -> ModerationDecision {
        self.cells
            .moderation
            .decide(&self.host, &request)
            .await
            .output
    }
}
