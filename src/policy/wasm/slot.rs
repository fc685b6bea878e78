//! The serving state of one slot: the active version (swapped atomically with its settings), the
//! previous good versions for rollback, the last rejection and the counters shown by the admin API.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::config::SlotSettings;
use super::module::PolicyModule;
use super::{Limits, Slot};

/// How many earlier good versions a slot keeps for rollback.
const HISTORY: usize = 5;

/// What serves a slot. Calls take a snapshot, so a swap never affects a call already started.
#[derive(Default)]
pub struct Active {
    /// None: no module configured, the built-in rules answer.
    pub settings: Option<Arc<SlotSettings>>,
    /// None with settings: configured, but no version passed its checks yet; the fallback answers.
    pub module: Option<Arc<PolicyModule>>,
}

impl Active {
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

pub struct SlotCell {
    pub slot: Slot,
    pub active: ArcSwap<Active>,
    history: Mutex<Vec<Arc<PolicyModule>>>,
    last_error: Mutex<Option<String>>,
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    pub fallbacks: AtomicU64,
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
    pub limits: Option<Limits>,
    /// Earlier good versions available to roll back to.
    pub previous_versions: usize,
}

impl SlotCell {
    pub fn new(slot: Slot, active: Active) -> Self {
        Self {
            slot,
            active: ArcSwap::from_pointee(active),
            history: Mutex::default(),
            last_error: Mutex::default(),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        }
    }

    /// Puts `next` in service. The version it replaces goes to the rollback history unless
    /// `keep_history` is false (a rollback must not push the version it undoes).
    pub fn swap(&self, next: Active, keep_history: bool) {
        let previous = self.active.swap(Arc::new(next));
        let current_sha = self.active.load().module.as_ref().map(|m| m.sha256.clone());
        if keep_history
            && let Some(old) = previous.module.clone()
            && Some(&old.sha256) != current_sha.as_ref()
        {
            let mut history = lock(&self.history);
            history.retain(|m| m.sha256 != old.sha256);
            history.push(old);
            if history.len() > HISTORY {
                history.remove(0);
            }
        }
        *lock(&self.last_error) = None;
    }

    /// Takes the most recent earlier version that differs from the one serving.
    pub fn pop_previous(&self) -> Option<Arc<PolicyModule>> {
        let current = self.active.load().module.as_ref().map(|m| m.sha256.clone());
        let mut history = lock(&self.history);
        while let Some(module) = history.pop() {
            if Some(&module.sha256) != current.as_ref() {
                return Some(module);
            }
        }
        None
    }

    /// Puts a version back on the history (a rollback that failed after popping it).
    pub fn push_back(&self, module: Arc<PolicyModule>) {
        lock(&self.history).push(module);
    }

    pub fn reject(&self, error: String) {
        *lock(&self.last_error) = Some(error);
    }

    pub fn status(&self, config_error: Option<&str>) -> SlotStatus {
        let active = self.active.load();
        let module = active.module.as_ref();
        let last_error = lock(&self.last_error)
            .clone()
            .or_else(|| config_error.map(|e| format!("policies.toml: {e}")));
        SlotStatus {
            slot: self.slot,
            policy: active.policy_label(),
            file: active.settings.as_ref().map(|s| s.file.clone()),
            sha256: module.map(|m| m.sha256.clone()),
            loaded_at: module.map(|m| m.loaded_at),
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            last_error,
            limits: active.settings.as_ref().map(|s| s.limits),
            previous_versions: lock(&self.history).len(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
