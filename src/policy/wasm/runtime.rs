//! [`PolicyRuntime`]: the serving state of the three slots, construction and the admin operations.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::call::{CallReport, Failure, FailureKind};
use super::config::{PoliciesConfig, SlotSettings};
use super::engine::{MAX_CONCURRENT_CALLS, engine};
use super::guardrails::PriceHistory;
use super::metrics::PolicyMetrics;
use super::module::{self, PolicyModule};
use super::slot::{Active, SlotCell, SlotStatus};
use super::{PolicyError, Slot, reload};

/// Serves the three policy slots from WebAssembly modules in a directory. Implements
/// [`Policies`](crate::policy::Policies); share it as `Arc<PolicyRuntime>`.
pub struct PolicyRuntime {
    pub(super) dir: PathBuf,
    slots: [SlotCell; 3],
    pub(super) prices: PriceHistory,
    pub(super) metrics: PolicyMetrics,
    /// Bounds guest calls in flight, so the instance pool is never exhausted and a flood of slow
    /// modules cannot take every blocking thread.
    permits: Arc<Semaphore>,
    /// Serializes reloads, uploads and rollbacks: each sees the state the previous one left.
    pub(super) admin: tokio::sync::Mutex<()>,
    /// Why the last attempt to read `policies.toml` failed; cleared by the next good read.
    pub(super) config_error: Mutex<Option<String>>,
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
        let runtime = Arc::new(Self::new(policies_dir)?);
        let config = PoliciesConfig::load(policies_dir)?;
        runtime.apply(config).await;
        reload::watch(&runtime, shutdown)?;
        Ok(runtime)
    }

    /// The same runtime without a directory watcher (tests, one-shot tools); call
    /// [`reload`](Self::reload) to pick up changes.
    pub async fn start_unwatched(policies_dir: &Path) -> Result<Arc<Self>, PolicyError> {
        let runtime = Arc::new(Self::new(policies_dir)?);
        let config = PoliciesConfig::load(policies_dir)?;
        runtime.apply(config).await;
        Ok(runtime)
    }

    fn new(policies_dir: &Path) -> Result<Self, PolicyError> {
        engine()?;
        let dir = std::fs::canonicalize(policies_dir)
            .map_err(|e| PolicyError::io("opening", policies_dir, e))?;
        Ok(Self {
            dir,
            slots: Slot::ALL.map(|slot| SlotCell::new(slot, Active::default())),
            prices: PriceHistory::default(),
            metrics: PolicyMetrics::default(),
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_CALLS)),
            admin: tokio::sync::Mutex::new(()),
            config_error: Mutex::default(),
        })
    }

    pub fn policies_dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn cell(&self, slot: Slot) -> &SlotCell {
        &self.slots[slot.index()]
    }

    pub fn statuses(&self) -> Vec<SlotStatus> {
        Slot::ALL
            .into_iter()
            .map(|slot| self.status(slot))
            .collect()
    }

    pub fn status(&self, slot: Slot) -> SlotStatus {
        let config_error = self
            .config_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.cell(slot).status(config_error.as_deref())
    }

    /// Registers the `policy_*` metrics (calls, failures by kind, fallbacks, call duration and fuel
    /// histograms per slot and version; reloads and rejected reloads per slot).
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }

    /// Validates `bytes` as the slot's new module exactly as a file change would be, then writes it
    /// into the policies directory (temp file + rename) and puts it in service.
    pub async fn upload(&self, slot: Slot, bytes: Vec<u8>) -> Result<SlotStatus, PolicyError> {
        let _admin = self.admin.lock().await;
        let settings = self
            .cell(slot)
            .active
            .load()
            .settings
            .clone()
            .ok_or(PolicyError::SlotNotConfigured(slot))?;
        let checked = self
            .check_blocking(slot, bytes.into(), settings.clone())
            .await?;
        let module = match checked {
            Ok(module) => module,
            Err(reason) => {
                // Rejected exactly like a file change: visible as the slot's last error too.
                self.metrics.reload(slot, false);
                tracing::warn!(%slot, "uploaded module rejected: {reason}");
                self.cell(slot).reject(format!("upload rejected: {reason}"));
                return Err(PolicyError::InvalidModule { slot, reason });
            }
        };
        self.write_module(&settings, &module).await?;
        self.install(slot, settings, module, true);
        Ok(self.status(slot))
    }

    /// Puts the previous good version back in service (and back into the policies directory, so a
    /// restart or reload keeps it). It is re-checked against the slot's current settings first.
    pub async fn rollback(&self, slot: Slot) -> Result<SlotStatus, PolicyError> {
        let _admin = self.admin.lock().await;
        let cell = self.cell(slot);
        let settings = cell
            .active
            .load()
            .settings
            .clone()
            .ok_or(PolicyError::SlotNotConfigured(slot))?;
        let previous = cell
            .pop_previous()
            .ok_or(PolicyError::NoPreviousVersion(slot))?;
        let checked = self
            .check_blocking(slot, previous.bytes.clone(), settings.clone())
            .await?;
        let module = match checked {
            Ok(module) => module,
            Err(reason) => {
                cell.push_back(previous);
                return Err(PolicyError::InvalidModule {
                    slot,
                    reason: format!("previous version no longer passes: {reason}"),
                });
            }
        };
        if let Err(e) = self.write_module(&settings, &module).await {
            cell.push_back(previous);
            return Err(e);
        }
        self.install(slot, settings, module, false);
        Ok(self.status(slot))
    }

    /// Compiles and checks a candidate on the blocking pool.
    pub(super) async fn check_blocking(
        &self,
        slot: Slot,
        bytes: Arc<[u8]>,
        settings: Arc<SlotSettings>,
    ) -> Result<Result<Arc<PolicyModule>, String>, PolicyError> {
        tokio::task::spawn_blocking(move || module::check(slot, bytes, &settings).module)
            .await
            .map_err(|e| PolicyError::Internal(format!("module check task: {e}")))
    }

    /// Swaps a checked version (with the settings it was checked under) into service.
    pub(super) fn install(
        &self,
        slot: Slot,
        settings: Arc<SlotSettings>,
        module: Arc<PolicyModule>,
        keep_history: bool,
    ) {
        tracing::info!(%slot, policy = %module.label(), "policy version in service");
        self.metrics.reload(slot, true);
        self.cell(slot).swap(
            Active {
                settings: Some(settings),
                module: Some(module),
            },
            keep_history,
        );
    }

    /// Writes a module atomically into the policies directory: a reader (or the watcher) sees the old
    /// file or the new one, never a partial write.
    async fn write_module(
        &self,
        settings: &SlotSettings,
        module: &PolicyModule,
    ) -> Result<(), PolicyError> {
        let path = self.dir.join(&settings.file);
        let tmp = self
            .dir
            .join(format!(".{}.{}.tmp", settings.file, std::process::id()));
        let bytes = module.bytes.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut file =
                std::fs::File::create(&tmp).map_err(|e| PolicyError::io("creating", &tmp, e))?;
            file.write_all(&bytes)
                .and_then(|()| file.sync_all())
                .map_err(|e| PolicyError::io("writing", &tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                PolicyError::io("renaming into", &path, e)
            })
        })
        .await
        .map_err(|e| PolicyError::Internal(format!("write task: {e}")))?
    }

    /// Runs one guest call on the blocking pool under a concurrency permit, and counts it.
    pub(super) async fn invoke<T, F>(
        &self,
        slot: Slot,
        active: &Arc<Active>,
        module: &Arc<PolicyModule>,
        decisions: u64,
        work: F,
    ) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnOnce(&PolicyModule, &SlotSettings) -> CallReport<T> + Send + 'static,
    {
        let Some(settings) = active.settings.clone() else {
            return Err(Failure::new(FailureKind::Host, "slot has no settings"));
        };
        let permit = match self.permits.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => return Err(Failure::new(FailureKind::Host, "runtime is shutting down")),
        };
        let module_for_call = module.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work(&module_for_call, &settings)
        })
        .await;
        let report = joined.unwrap_or_else(|e| CallReport {
            result: Err(Failure::new(
                FailureKind::Host,
                format!("call task failed: {e}"),
            )),
            cost: Default::default(),
        });
        self.cell(slot)
            .calls
            .fetch_add(decisions, Ordering::Relaxed);
        self.metrics
            .call(slot, module.version(), decisions, &report.cost);
        report.result
    }

    /// Counts and logs a decision answered by the fallback.
    pub(super) fn fell_back(&self, slot: Slot, active: &Active, failure: &Failure) {
        let cell = self.cell(slot);
        if failure.kind != FailureKind::NotLoaded {
            cell.failures.fetch_add(1, Ordering::Relaxed);
        }
        cell.fallbacks.fetch_add(1, Ordering::Relaxed);
        self.metrics.fallback(slot, active.version(), failure.kind);
        tracing::warn!(%slot, policy = %active.policy_label(), kind = %failure.kind, "policy fell back: {}", failure.message);
    }
}
