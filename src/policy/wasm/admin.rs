//! The admin side of a slot, written once for every slot kind: reload from the policies directory,
//! upload, rollback, status, and the `policy check` / `policy test` runs. [`SlotAdmin`] is the
//! object-safe view for callers that pick the slot at run time by [`Slot`]; [`Cells`] holds one typed
//! cell per slot kind and hands out that view.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::Utc;

use super::candidate::{Candidate, CandidateState, Plan};
use super::cell::{Active, Compiling, SlotCell, SlotStatus};
use super::checks::{self, CheckStep, SampleRun};
use super::config::{CandidateRole, SlotCandidates, SlotSettings};
use super::error::PolicyError;
use super::host::Host;
use super::kinds::{ModerationSlot, PricingSlot, SlotKind, TimeoutSlot};
use super::module::{PolicyModule, sha256_hex};
use super::signing::{SIGNATURE_SUFFIX, TrustedKeys, read_signature_beside};
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

    /// Brings the slot's shadow and canary in line with `desired`, each like a slot's module: an
    /// unchanged one is left alone (with its counters and state), a failing one is rejected and the
    /// loaded one keeps its place.
    async fn reload_candidates(&self, host: &Host, desired: SlotCandidates);

    /// Makes the running candidate (the canary, else the shadow) the slot's live version: its samples
    /// are run under the slot's settings, it is written into the slot's file and swapped in; decisions
    /// already started finish on the version they started with. The replaced version goes to the
    /// rollback history. Returns the promoted candidate's role.
    async fn promote(&self, host: &Host) -> Result<CandidateRole, PolicyError>;

    /// Checks `bytes` exactly as a file change would be (`signature`: the signature file's content
    /// that came with them), then writes them and their signature into the policies directory (temp
    /// file + rename) and puts them in service.
    async fn upload(
        &self,
        host: &Host,
        bytes: Vec<u8>,
        signature: Option<Vec<u8>>,
    ) -> Result<(), PolicyError>;

    /// Puts the previous good version back in service (and back into the policies directory, so a
    /// restart or reload keeps it), re-checked against the slot's current settings first.
    async fn rollback(&self, host: &Host) -> Result<(), PolicyError>;

    /// Every check a hot reload runs, the signature (the signature file's content) included.
    /// Blocking.
    fn check(
        &self,
        bytes: Arc<[u8]>,
        signature: Option<Arc<[u8]>>,
        settings: &SlotSettings,
    ) -> CheckOutcome;

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
    async fn reload_candidate(&self, host: &Host, role: CandidateRole, plan: Option<Plan>) {
        let slot = K::SLOT;
        let current = self.candidates.load_full();
        let Some(plan) = plan else {
            if current.get(role).is_some() {
                tracing::info!(%slot, role = role.as_str(), "candidate removed");
                self.candidates.store(Arc::new(current.with(role, None)));
            }
            self.candidate_error(role, None);
            return;
        };
        let settings = match &plan {
            Plan::Shadow(shadow) => shadow.settings.clone(),
            Plan::Canary(canary) => canary.settings.clone(),
        };
        let (bytes, signature) = match read_module(host.dir.join(&settings.file)).await {
            Ok(read) => read,
            Err(e) => {
                let reason = format!(
                    "{role}: cannot read {}: {e}",
                    settings.file,
                    role = role.as_str()
                );
                tracing::warn!(%slot, "{reason}");
                return self.candidate_error(role, Some(reason));
            }
        };
        let unchanged = current
            .get(role)
            .is_some_and(|c| c.plan == plan && c.sha256() == Some(sha256_hex(&bytes).as_str()));
        if unchanged {
            return;
        }
        match check_blocking::<K>(
            host,
            bytes.into(),
            signature.map(Into::into),
            Arc::new(settings),
        )
        .await
        {
            Ok(module) => {
                tracing::info!(%slot, role = role.as_str(), policy = %module.label(), "candidate loaded");
                let candidate = Candidate::start(plan, module, host.decisions.clone());
                self.candidates
                    .store(Arc::new(current.with(role, Some(Arc::new(candidate)))));
                self.candidate_error(role, None);
            }
            Err(reason) => {
                tracing::warn!(%slot, role = role.as_str(), "candidate rejected, the loaded one (if any) stays: {reason}");
                host.metrics.reload(slot, false);
                self.candidate_error(role, Some(format!("{}: {reason}", role.as_str())));
            }
        }
    }

    /// The serving settings, with the trusted keys `policies.toml` lists now (see [`Host`]).
    fn settings(&self, host: &Host) -> Result<Arc<SlotSettings>, PolicyError> {
        let serving = self
            .active
            .load()
            .settings
            .clone()
            .ok_or(PolicyError::SlotNotConfigured(K::SLOT))?;
        let trusted_keys = host.trusted_keys();
        if serving.trusted_keys == *trusted_keys {
            return Ok(serving);
        }
        Ok(Arc::new(SlotSettings {
            trusted_keys: TrustedKeys::clone(&trusted_keys),
            ..SlotSettings::clone(&serving)
        }))
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

/// Verifies, compiles (or loads from the host's compile cache) and checks a candidate on the
/// blocking pool.
async fn check_blocking<K: SlotKind>(
    host: &Host,
    bytes: Arc<[u8]>,
    signature: Option<Arc<[u8]>>,
    settings: Arc<SlotSettings>,
) -> Result<Arc<PolicyModule<K>>, String> {
    let cache = host.cache.clone();
    tokio::task::spawn_blocking(move || {
        checks::check::<K>(bytes, signature, &settings, cache.as_deref()).module
    })
    .await
    .unwrap_or_else(|e| Err(format!("module check task: {e}")))
}

impl<K: SlotKind> SlotCell<K> {
    /// [`check_blocking`], shown as the slot's `compiling` state meanwhile; the active version keeps
    /// serving.
    async fn check_candidate(
        &self,
        host: &Host,
        bytes: Arc<[u8]>,
        signature: Option<Arc<[u8]>>,
        settings: Arc<SlotSettings>,
    ) -> Result<Arc<PolicyModule<K>>, String> {
        let _compiling = self.compiling(Compiling {
            file: settings.file.clone(),
            sha256: sha256_hex(&bytes),
            since: Utc::now(),
        });
        check_blocking::<K>(host, bytes, signature, settings).await
    }
}

/// Writes a checked version and its signature into the policies directory, the signature first: a
/// reader that sees the new module also sees its signature. A version without a signature removes
/// the old one's, which would only describe other bytes.
async fn write_version<K: SlotKind>(
    host: &Host,
    file: &str,
    module: &PolicyModule<K>,
) -> Result<(), PolicyError> {
    let signature_file = format!("{file}{SIGNATURE_SUFFIX}");
    match &module.signature {
        Some(signature) => write_module(host, &signature_file, signature.clone()).await?,
        None => {
            let path = host.dir.join(&signature_file);
            match tokio::fs::remove_file(&path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(PolicyError::io("removing", path, e));
                }
                _ => {}
            }
        }
    }
    write_module(host, file, module.bytes.clone()).await
}

/// Writes a file atomically into the policies directory: a reader (or the watcher) sees the old
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
        let (bytes, signature) = match read_module(host.dir.join(&desired.file)).await {
            Ok(read) => read,
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
            .check_candidate(
                host,
                bytes.into(),
                signature.map(Into::into),
                settings.clone(),
            )
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

    async fn upload(
        &self,
        host: &Host,
        bytes: Vec<u8>,
        signature: Option<Vec<u8>>,
    ) -> Result<(), PolicyError> {
        let slot = K::SLOT;
        let settings = self.settings(host)?;
        let checked = self
            .check_candidate(
                host,
                bytes.into(),
                signature.map(Into::into),
                settings.clone(),
            )
            .await;
        let module = match checked {
            Ok(module) => module,
            Err(reason) => {
                // Rejected exactly like a file change: visible as the slot's last error too.
                host.metrics.reload(slot, false);
                tracing::warn!(%slot, "uploaded module rejected: {reason}");
                self.reject(format!("upload rejected: {reason}"));
                return Err(PolicyError::InvalidModule { slot, reason });
            }
        };
        write_version(host, &settings.file, &module).await?;
        self.install(host, settings, module, true);
        Ok(())
    }

    async fn rollback(&self, host: &Host) -> Result<(), PolicyError> {
        let slot = K::SLOT;
        let settings = self.settings(host)?;
        let previous = self
            .pop_previous()
            .ok_or(PolicyError::NoPreviousVersion(slot))?;
        // Verified against the trusted keys configured now, not those it was first accepted under.
        let checked = self
            .check_candidate(
                host,
                previous.bytes.clone(),
                previous.signature.clone(),
                settings.clone(),
            )
            .await;
        let module = match checked {
            Ok(module) => module,
            Err(reason) => {
                self.push_back(previous);
                return Err(PolicyError::InvalidModule {
                    slot,
                    reason: format!("previous version no longer passes: {reason}"),
                });
            }
        };
        if let Err(e) = write_version(host, &settings.file, &module).await {
            self.push_back(previous);
            return Err(e);
        }
        let undone = self.active.load().module.as_ref().map(|m| m.sha256.clone());
        self.install(host, settings, module, false);
        // A promoted candidate whose promotion is undone must not go back to taking traffic.
        let tried = self.candidates.load();
        for candidate in [tried.shadow.as_ref(), tried.canary.as_ref()]
            .into_iter()
            .flatten()
        {
            if candidate.sha256() == undone.as_deref() {
                candidate.set_state(CandidateState::RolledBack);
            }
        }
        Ok(())
    }

    async fn reload_candidates(&self, host: &Host, desired: SlotCandidates) {
        self.reload_candidate(
            host,
            CandidateRole::Shadow,
            desired.shadow.map(Plan::Shadow),
        )
        .await;
        self.reload_candidate(
            host,
            CandidateRole::Canary,
            desired.canary.map(Plan::Canary),
        )
        .await;
    }

    async fn promote(&self, host: &Host) -> Result<CandidateRole, PolicyError> {
        let slot = K::SLOT;
        let settings = self.settings(host)?;
        let active = self.active.load_full();
        let tried = self.candidates.load_full();
        let no_candidate = |reason: String| PolicyError::NoCandidate { slot, reason };
        let candidate = [tried.canary.as_ref(), tried.shadow.as_ref()]
            .into_iter()
            .flatten()
            .find(|c| c.sees_traffic(&active))
            .ok_or_else(|| {
                no_candidate(match (&tried.canary, &tried.shadow) {
                    (None, None) => "policies.toml names no shadow or canary".into(),
                    _ => "no candidate is running (see its state in GET /v1/admin/policies)".into(),
                })
            })?;
        let module = candidate
            .module()
            .ok_or_else(|| no_candidate("the candidate has no loaded version".into()))?;
        let live = Arc::new(module.relabeled(&settings.file));
        let checked = {
            let (live, settings) = (live.clone(), settings.clone());
            tokio::task::spawn_blocking(move || {
                checks::check_samples(&live, &settings, &mut Vec::new(), &mut Vec::new())
            })
            .await
            .unwrap_or_else(|e| Err(format!("sample check task: {e}")))
        };
        if let Err(reason) = checked {
            return Err(PolicyError::InvalidModule {
                slot,
                reason: format!("under the slot's settings: {reason}"),
            });
        }
        write_version(host, &settings.file, &live).await?;
        self.install(host, settings, live, true);
        candidate.set_state(CandidateState::Promoted);
        Ok(candidate.plan.role())
    }

    fn check(
        &self,
        bytes: Arc<[u8]>,
        signature: Option<Arc<[u8]>>,
        settings: &SlotSettings,
    ) -> CheckOutcome {
        let checked = checks::check::<K>(bytes, signature, settings, None);
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

/// A module's bytes and the signature beside it, read off the runtime's threads.
async fn read_module(path: std::path::PathBuf) -> std::io::Result<(Vec<u8>, Option<Vec<u8>>)> {
    tokio::task::spawn_blocking(move || {
        let bytes = std::fs::read(&path)?;
        let signature = read_signature_beside(&path).map_err(std::io::Error::other)?;
        Ok((bytes, signature))
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
}
