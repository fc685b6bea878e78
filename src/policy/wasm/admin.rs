//! The admin side of a slot, written once for every slot kind: reload from the policies directory,
//! upload, rollback, status, and the `policy check` / `policy test` runs. [`SlotAdmin`] is the
//! object-safe view for callers that pick the slot at run time by [`Slot`]; [`Cells`] holds one typed
//! cell per slot kind and hands out that view.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::Utc;

use super::cell::{Active, Compiling, SlotCell, SlotStatus};
use super::checks::{self, CheckStep, SampleRun};
use super::config::SlotSettings;
use super::error::PolicyError;
use super::host::Host;
use super::kinds::{ModerationSlot, PricingSlot, SlotKind, TimeoutSlot};
use super::module::{PolicyModule, sha256_hex};
use super::slot::Slot;

/// One cell per slot kind. Typed code (deciding) reaches a slot by field, so a call on the wrong slot
/// cannot be written; run-time code goes through [`Cells::admin`].
#[derive(Default)]
pub struct Cells {
    pub pricing: SlotCell<PricingSlot>,
    pub timeout: SlotCell<TimeoutSlot>,
    pub moderation: SlotCell<ModerationSlot>,
}

impl Cells {
    pub fn admin(&self, slot: Slot) -> &dyn SlotAdmin {
        match slot {
            Slot::Pricing => &self.pricing,
            Slot::BookingTimeout => &self.timeout,
            Slot::ReviewModeration => &self.moderation,
        }
    }
}

/// What `policy check` reports: every step in order (stopping at the first failure) and the samples.
pub struct CheckOutcome {
    pub steps: Vec<CheckStep>,
    pub samples: Vec<SampleRun>,
    pub passed: bool,
}

/// A slot's admin operations, for callers that hold a [`Slot`] rather than a type. The runtime
/// serializes the async ones (one admin operation at a time).
#[async_trait]
pub trait SlotAdmin: Send + Sync {
    /// `config_error`: why `policies.toml` was last rejected, shown when the slot has no error of its
    /// own.
    fn status(&self, config_error: Option<&str>) -> SlotStatus;

    /// True when `policies.toml` configures a module for the slot.
    fn is_configured(&self) -> bool;

    /// Brings the slot in line with `desired` (its `policies.toml` settings; None: built-in rules) and
    /// its file. An unchanged file and settings leave the slot alone; a candidate failing any check is
    /// rejected and the current version keeps serving.
    async fn reload(&self, host: &Host, desired: Option<SlotSettings>);

    /// Checks `bytes` exactly as a file change would be, then writes them into the policies directory
    /// (temp file + rename) and puts them in service.
    async fn upload(&self, host: &Host, bytes: Vec<u8>) -> Result<(), PolicyError>;

    /// Puts the previous good version back in service (and back into the policies directory, so a
    /// restart or reload keeps it), re-checked against the slot's current settings first.
    async fn rollback(&self, host: &Host) -> Result<(), PolicyError>;

    /// Every check a hot reload runs. Blocking.
    fn check(&self, bytes: Arc<[u8]>, settings: &SlotSettings) -> CheckOutcome;

    /// Loads `bytes` (without running the samples) and runs one decision from `input`, the slot's WIT
    /// request record as JSON. Blocking. The answer's shape is `policy test`'s (see `cli.rs`).
    fn test_json(
        &self,
        bytes: Arc<[u8]>,
        settings: &SlotSettings,
        input: &serde_json::Value,
    ) -> Result<serde_json::Value, PolicyError>;
}

impl<K: SlotKind> SlotCell<K> {
    fn settings(&self) -> Result<Arc<SlotSettings>, PolicyError> {
        self.active
            .load()
            .settings
            .clone()
            .ok_or(PolicyError::SlotNotConfigured(K::SLOT))
    }

    /// Records a rejected candidate. The current version keeps serving; a slot that has no version
    /// yet takes the new settings (so its status names the right file) and keeps falling back.
    fn reject_candidate(
        &self,
        host: &Host,
        current: &Active<K>,
        desired: SlotSettings,
        reason: &str,
    ) {
        let slot = K::SLOT;
        tracing::warn!(%slot, file = %desired.file, "policy candidate rejected, current version keeps serving: {reason}");
        host.metrics.reload(slot, false);
        if current.module.is_none() {
            self.swap(
                Active {
                    settings: Some(Arc::new(desired)),
                    module: None,
                },
                false,
            );
        }
        self.reject(format!("{slot}: {reason}"));
    }

    /// Swaps a checked version (with the settings it was checked under) into service.
    fn install(
        &self,
        host: &Host,
        settings: Arc<SlotSettings>,
        module: Arc<PolicyModule<K>>,
        keep_history: bool,
    ) {
        tracing::info!(slot = %K::SLOT, policy = %module.label(), "policy version in service");
        host.metrics.reload(K::SLOT, true);
        self.swap(
            Active {
                settings: Some(settings),
                module: Some(module),
            },
            keep_history,
        );
    }
}

impl<K: SlotKind> SlotCell<K> {
    /// Compiles (or loads from the host's compile cache) and checks a candidate on the blocking pool,
    /// shown as the slot's `compiling` state meanwhile; the active version keeps serving.
    async fn check_candidate(
        &self,
        host: &Host,
        bytes: Arc<[u8]>,
        settings: Arc<SlotSettings>,
    ) -> Result<Arc<PolicyModule<K>>, String> {
        let _compiling = self.compiling(Compiling {
            file: settings.file.clone(),
            sha256: sha256_hex(&bytes),
            since: Utc::now(),
        });
        let cache = host.cache.clone();
        tokio::task::spawn_blocking(move || {
            checks::check::<K>(bytes, &settings, cache.as_deref()).module
        })
        .await
        .unwrap_or_else(|e| Err(format!("module check task: {e}")))
    }
}

/// Writes a module atomically into the policies directory: a reader (or the watcher) sees the old
/// file or the new one, never a partial write.
async fn write_module(host: &Host, file: &str, bytes: Arc<[u8]>) -> Result<(), PolicyError> {
    let path = host.dir.join(file);
    let tmp = host.dir.join(format!(".{file}.{}.tmp", std::process::id()));
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut out =
            std::fs::File::create(&tmp).map_err(|e| PolicyError::io("creating", &tmp, e))?;
        out.write_all(&bytes)
            .and_then(|()| out.sync_all())
            .map_err(|e| PolicyError::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            PolicyError::io("renaming into", &path, e)
        })
    })
    .await
    .map_err(|e| PolicyError::Internal(format!("write task: {e}")))?
}

#[async_trait]
impl<K: SlotKind> SlotAdmin for SlotCell<K> {
    fn status(&self, config_error: Option<&str>) -> SlotStatus {
        SlotCell::status(self, config_error)
    }

    fn is_configured(&self) -> bool {
        self.active.load().settings.is_some()
    }

    async fn reload(&self, host: &Host, desired: Option<SlotSettings>) {
        let slot = K::SLOT;
        let current = self.active.load_full();
        let Some(desired) = desired else {
            if current.settings.is_some() {
                tracing::info!(%slot, "no module configured any more: built-in rules answer");
                host.metrics.reload(slot, true);
                self.swap(Active::default(), true);
            }
            return;
        };
        let path = host.dir.join(&desired.file);
        let read = tokio::task::spawn_blocking(move || std::fs::read(&path)).await;
        let bytes = match read.unwrap_or_else(|e| Err(std::io::Error::other(e.to_string()))) {
            Ok(bytes) => bytes,
            Err(e) => {
                let reason = format!("cannot read {}: {e}", desired.file);
                return self.reject_candidate(host, &current, desired, &reason);
            }
        };
        let unchanged = current
            .module
            .as_ref()
            .is_some_and(|m| m.sha256 == sha256_hex(&bytes))
            && current.settings.as_deref() == Some(&desired);
        if unchanged {
            return;
        }
        let settings = Arc::new(desired);
        let started = Instant::now();
        match self
            .check_candidate(host, bytes.into(), settings.clone())
            .await
        {
            Ok(module) => {
                tracing::debug!(%slot, elapsed_ms = started.elapsed().as_millis() as u64, "candidate checked");
                self.install(host, settings, module, true);
            }
            Err(reason) => {
                self.reject_candidate(host, &current, Arc::unwrap_or_clone(settings), &reason)
            }
        }
    }

    async fn upload(&self, host: &Host, bytes: Vec<u8>) -> Result<(), PolicyError> {
        let slot = K::SLOT;
        let settings = self.settings()?;
        let module = match self
            .check_candidate(host, bytes.into(), settings.clone())
            .await
        {
            Ok(module) => module,
            Err(reason) => {
                // Rejected exactly like a file change: visible as the slot's last error too.
                host.metrics.reload(slot, false);
                tracing::warn!(%slot, "uploaded module rejected: {reason}");
                self.reject(format!("upload rejected: {reason}"));
                return Err(PolicyError::InvalidModule { slot, reason });
            }
        };
        write_module(host, &settings.file, module.bytes.clone()).await?;
        self.install(host, settings, module, true);
        Ok(())
    }

    async fn rollback(&self, host: &Host) -> Result<(), PolicyError> {
        let slot = K::SLOT;
        let settings = self.settings()?;
        let previous = self
            .pop_previous()
            .ok_or(PolicyError::NoPreviousVersion(slot))?;
        let module = match self
            .check_candidate(host, previous.bytes.clone(), settings.clone())
            .await
        {
            Ok(module) => module,
            Err(reason) => {
                self.push_back(previous);
                return Err(PolicyError::InvalidModule {
                    slot,
                    reason: format!("previous version no longer passes: {reason}"),
                });
            }
        };
        if let Err(e) = write_module(host, &settings.file, module.bytes.clone()).await {
            self.push_back(previous);
            return Err(e);
        }
        self.install(host, settings, module, false);
        Ok(())
    }

    fn check(&self, bytes: Arc<[u8]>, settings: &SlotSettings) -> CheckOutcome {
        let checked = checks::check::<K>(bytes, settings, None);
        CheckOutcome {
            passed: checked.module.is_ok(),
            steps: checked.steps,
            samples: checked.samples,
        }
    }

    fn test_json(
        &self,
        bytes: Arc<[u8]>,
        settings: &SlotSettings,
        input: &serde_json::Value,
    ) -> Result<serde_json::Value, PolicyError> {
        let slot = K::SLOT;
        let module = checks::load_unchecked_samples::<K>(bytes, settings)
            .module
            .map_err(|reason| PolicyError::InvalidModule { slot, reason })?;
        let (result, cost) =
            module
                .run_json(settings, input)
                .map_err(|bad| PolicyError::InvalidInput {
                    slot,
                    reason: bad.0,
                })?;
        let mut out = serde_json::json!({
            "policy": module.label(),
            "fuel_used": cost.fuel_used,
            "elapsed_us": cost.elapsed.as_micros() as u64,
            "peak_memory_bytes": cost.peak_memory_bytes,
        });
        match result {
            Ok(output) => out["output"] = output,
            Err(failure) => {
                out["failure"] =
                    serde_json::json!({ "kind": failure.kind, "message": failure.message })
            }
        }
        Ok(out)
    }
}
