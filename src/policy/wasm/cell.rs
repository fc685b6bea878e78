//! [`SlotCell`]: the serving state of one slot: the active version (swapped atomically with its
//! settings), the previous good versions for rollback, the last rejection, the counters shown by the
//! admin API and the host state the slot's decisions share (none today: pricing's travels in its requests).
//!
//! Deciding is in `decide.rs`, the admin operations in `admin.rs`; both are written once for every
//! slot kind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::call::Failure;
use super::candidate::{Candidate, CandidateStatus};
use super::config::{CandidateRole, HistoryLimits, SlotSettings};
use super::kinds::SlotKind;
use super::limits::Limits;
use super::module::PolicyModule;
use super::slot::Slot;

/// An earlier good version kept for rollback: its file bytes and signature only. A rollback verifies,
/// compiles and checks it again, so history costs the bytes of the files, never their compiled code.
#[derive(Clone)]
pub struct Previous {
    pub sha256: String,
    pub bytes: Arc<[u8]>,
    pub signature: Option<Arc<[u8]>>,
}

/// What serves a slot. Calls take a snapshot, so a swap never affects a call already started.
pub struct Active<K: SlotKind> {
    /// None: no module configured, the built-in rules answer.
    pub settings: Option<Arc<SlotSettings>>,
    /// None with settings: configured, but no version passed its checks yet; the fallback answers.
    pub module: Option<Arc<PolicyModule<K>>>,
}

impl<K: SlotKind> Default for Active<K> {
    fn default() -> Self {
        Self {
            settings: None,
            module: None,
        }
    }
}

impl<K: SlotKind> Active<K> {
    /// The decision source for this snapshot: `<file>@<sha prefix>`, or the file alone when no version
    /// is loaded.
    pub fn policy_label(&self) -> String {
        match (&self.module, &self.settings) {
            (Some(module), _) => module.label(),
            (None, Some(settings)) => format!("{}@none", settings.file),
            (None, None) => "builtin".to_owned(),
        }
    }

    pub fn version(&self) -> &str {
        self.module.as_ref().map_or("none", |m| m.version())
    }
}

/// A slot's candidates; swapped as a whole, like [`Active`].
pub struct Tried<K: SlotKind> {
    pub shadow: Option<Arc<Candidate<K>>>,
    pub canary: Option<Arc<Candidate<K>>>,
}

impl<K: SlotKind> Default for Tried<K> {
    fn default() -> Self {
        Self {
            shadow: None,
            canary: None,
        }
    }
}

impl<K: SlotKind> Tried<K> {
    pub fn get(&self, role: CandidateRole) -> Option<&Arc<Candidate<K>>> {
        match role {
            CandidateRole::Shadow => self.shadow.as_ref(),
            CandidateRole::Canary => self.canary.as_ref(),
        }
    }

    pub fn with(&self, role: CandidateRole, candidate: Option<Arc<Candidate<K>>>) -> Self {
        let (mut shadow, mut canary) = (self.shadow.clone(), self.canary.clone());
        match role {
            CandidateRole::Shadow => shadow = candidate,
            CandidateRole::Canary => canary = candidate,
        }
        Self { shadow, canary }
    }
}

pub struct SlotCell<K: SlotKind> {
    pub active: ArcSwap<Active<K>>,
    pub candidates: ArcSwap<Tried<K>>,
    /// The latest rejected version of each candidate role.
    candidate_errors: Mutex<[Option<String>; 2]>,
    /// Oldest first; bounded by the active settings' [`HistoryLimits`].
    history: Mutex<Vec<Previous>>,
    last_error: Mutex<Option<String>>,
    /// Why the latest call fell back (`kind: reason`, escaped and bounded); cleared by a new version.
    last_failure: Mutex<Option<String>>,
    /// The candidate being compiled and checked, if any (the active version serves meanwhile).
    compiling: Mutex<Option<Compiling>>,
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    pub fallbacks: AtomicU64,
    /// Shared by every decision of the slot, across versions.
    pub state: K::HostState,
}

/// One row of `GET /v1/admin/policies`.
#[derive(Debug, Clone, Serialize)]
pub struct SlotStatus {
    pub slot: Slot,
    /// `builtin`, or `<file>@<sha256 prefix>`.
    pub policy: String,
    pub file: Option<String>,
    pub sha256: Option<String>,
    pub loaded_at: Option<DateTime<Utc>>,
    /// Decisions asked of this slot's modules since start (all versions).
    pub calls: u64,
    /// Calls that failed (trap, fuel, deadline, memory, invalid output, ...).
    pub failures: u64,
    /// Decisions answered by the fallback (failures plus calls to a slot with no loaded version).
    pub fallbacks: u64,
    /// The latest rejected candidate (module or `policies.toml`), cleared when a new version is accepted.
    pub last_error: Option<String>,
    /// Why the serving version's latest failed call fell back (`trap: stack overflow (...) in ...`,
    /// `invalid_output: ...`); None until one fails.
    pub last_failure: Option<String>,
    pub limits: Option<Limits>,
    /// Earlier good versions available to roll back to.
    pub previous_versions: usize,
    /// Their sha256s, oldest first; the last one is what `rollback` puts back.
    pub history: Vec<String>,
    /// The shadow candidate, if `policies.toml` names one.
    pub shadow: Option<CandidateStatus>,
    /// The canary candidate, if `policies.toml` names one.
    pub canary: Option<CandidateStatus>,
    /// What the slot holds in host memory.
    pub memory: SlotMemory,
    /// A candidate being compiled and checked (reload, upload, rollback) while the current version
    /// keeps serving; None when there is none.
    pub compiling: Option<Compiling>,
}

/// A candidate version under compilation and checks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Compiling {
    pub file: String,
    pub sha256: String,
    pub since: DateTime<Utc>,
}

/// Host memory a slot holds: the serving version (its file and its compiled code) and the rollback
/// history (files only), bounded by `history_limits`.
#[derive(Debug, Clone, Serialize)]
pub struct SlotMemory {
    pub module_bytes: usize,
    pub compiled_bytes: usize,
    pub history_bytes: usize,
    /// The sum of the three above.
    pub total_bytes: usize,
    pub history_limits: HistoryLimits,
}

impl<K: SlotKind> Default for SlotCell<K> {
    fn default() -> Self {
        Self {
            active: ArcSwap::from_pointee(Active::default()),
            candidates: ArcSwap::from_pointee(Tried::default()),
            candidate_errors: Mutex::default(),
            history: Mutex::default(),
            last_error: Mutex::default(),
            last_failure: Mutex::default(),
            compiling: Mutex::default(),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            state: K::HostState::default(),
        }
    }
}

impl<K: SlotKind> SlotCell<K> {
    /// Puts `next` in service. The version it replaces goes to the rollback history unless
    /// `keep_history` is false (a rollback must not push the version it undoes).
    pub fn swap(&self, next: Active<K>, keep_history: bool) {
        let bounds = history_limits(&next);
        let previous = self.active.swap(Arc::new(next));
        let current_sha = self.active.load().module.as_ref().map(|m| m.sha256.clone());
        let mut history = lock(&self.history);
        if keep_history
            && let Some(old) = previous.module.as_ref()
            && Some(&old.sha256) != current_sha.as_ref()
        {
            history.retain(|m| m.sha256 != old.sha256);
            history.push(Previous {
                sha256: old.sha256.clone(),
                bytes: old.bytes.clone(),
                signature: old.signature.clone(),
            });
        }
        trim(&mut history, &bounds);
        drop(history);
        *lock(&self.last_error) = None;
        *lock(&self.last_failure) = None;
    }

    /// Records why a call fell back (the message is already escaped, see `Failure::new`).
    pub fn failed(&self, failure: &Failure) {
        *lock(&self.last_failure) = Some(failure.to_string());
    }

    /// Takes the most recent earlier version that differs from the one serving.
    pub fn pop_previous(&self) -> Option<Previous> {
        let current = self.active.load().module.as_ref().map(|m| m.sha256.clone());
        let mut history = lock(&self.history);
        while let Some(previous) = history.pop() {
            if Some(&previous.sha256) != current.as_ref() {
                return Some(previous);
            }
        }
        None
    }

    /// Puts a version back on the history (a rollback that failed after popping it).
    pub fn push_back(&self, previous: Previous) {
        let bounds = history_limits(&self.active.load());
        let mut history = lock(&self.history);
        history.push(previous);
        trim(&mut history, &bounds);
    }

    /// Shows `candidate` as compiling until the returned guard is dropped.
    pub fn compiling(&self, candidate: Compiling) -> CompilingGuard<'_> {
        *lock(&self.compiling) = Some(candidate);
        CompilingGuard(&self.compiling)
    }

    pub fn reject(&self, error: String) {
        *lock(&self.last_error) = Some(error);
    }

    /// Records why a candidate version was rejected (None: clears it).
    pub fn candidate_error(&self, role: CandidateRole, error: Option<String>) {
        lock(&self.candidate_errors)[role_index(role)] = error;
    }

    fn candidate_status(&self, role: CandidateRole, active: &Active<K>) -> Option<CandidateStatus> {
        let error = lock(&self.candidate_errors)[role_index(role)].clone();
        let tried = self.candidates.load();
        match tried.get(role) {
            Some(candidate) => Some(candidate.status(active, error)),
            None => error.map(|last_error| CandidateStatus {
                role,
                file: String::new(),
                sha256: None,
                policy: None,
                state: "not_loaded".to_owned(),
                reason: None,
                percent: None,
                loaded_at: None,
                calls: 0,
                failures: 0,
                dropped: 0,
                last_error: Some(last_error),
            }),
        }
    }

    pub fn status(&self, config_error: Option<&str>) -> SlotStatus {
        let active = self.active.load();
        let module = active.module.as_ref();
        let history: Vec<String> = lock(&self.history)
            .iter()
            .map(|p| p.sha256.clone())
            .collect();
        let last_failure = lock(&self.last_failure).clone();
        let last_error = lock(&self.last_error)
            .clone()
            .or_else(|| config_error.map(|e| format!("policies.toml: {e}")));
        SlotStatus {
            slot: K::SLOT,
            policy: active.policy_label(),
            file: active.settings.as_ref().map(|s| s.file.clone()),
            sha256: module.map(|m| m.sha256.clone()),
            loaded_at: module.map(|m| m.loaded_at),
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            last_error,
            last_failure,
            limits: active.settings.as_ref().map(|s| s.limits),
            previous_versions: history.len(),
            history,
            shadow: self.candidate_status(CandidateRole::Shadow, &active),
            canary: self.candidate_status(CandidateRole::Canary, &active),
            memory: self.memory(&active),
            compiling: lock(&self.compiling).clone(),
        }
    }

    fn memory(&self, active: &Active<K>) -> SlotMemory {
        let module_bytes = active.module.as_ref().map_or(0, |m| m.bytes.len());
        let compiled_bytes = active.module.as_ref().map_or(0, |m| m.compiled_bytes);
        let history_bytes = history_bytes(&lock(&self.history));
        SlotMemory {
            module_bytes,
            compiled_bytes,
            history_bytes,
            total_bytes: module_bytes + compiled_bytes + history_bytes,
            history_limits: history_limits(active),
        }
    }
}

/// Clears the slot's compiling state when the candidate's checks end, however they end.
pub struct CompilingGuard<'a>(&'a Mutex<Option<Compiling>>);

impl Drop for CompilingGuard<'_> {
    fn drop(&mut self) {
        *lock(self.0) = None;
    }
}

fn history_limits<K: SlotKind>(active: &Active<K>) -> HistoryLimits {
    active
        .settings
        .as_ref()
        .map_or_else(HistoryLimits::default, |s| s.history)
}

fn history_bytes(history: &[Previous]) -> usize {
    history.iter().map(|p| p.bytes.len()).sum()
}

/// Drops the oldest versions until the history is within both bounds. A single version larger than
/// the byte bound is not kept at all.
fn trim(history: &mut Vec<Previous>, bounds: &HistoryLimits) {
    while !history.is_empty()
        && (history.len() > bounds.versions || history_bytes(history) > bounds.max_bytes())
    {
        history.remove(0);
    }
}

fn role_index(role: CandidateRole) -> usize {
    match role {
        CandidateRole::Shadow => 0,
        CandidateRole::Canary => 1,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::wasm::kinds::PricingSlot;

    #[test]
    fn a_compiling_candidate_shows_in_the_status_until_its_checks_end() {
        let cell = SlotCell::<PricingSlot>::default();
        assert_eq!(cell.status(None).compiling, None);
        let candidate = Compiling {
            file: "pricing.wasm".into(),
            sha256: "ab".repeat(32),
            since: Utc::now(),
        };
        let guard = cell.compiling(candidate.clone());
        assert_eq!(cell.status(None).compiling, Some(candidate));
        drop(guard);
        assert_eq!(cell.status(None).compiling, None);
    }
}
