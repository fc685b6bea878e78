//! Hot reload: a watcher on the policies directory and the per-slot reload it triggers.
//!
//! Events are debounced (the directory must be quiet for [`DEBOUNCE`]) and filtered by name: only
//! `policies.toml` and `*.wasm` count, editor temp files (`.swp`, `~`, `4913`, `#...#`) and our own
//! `.tmp` files do not. A module written in place may still be seen half-written; it then fails to
//! compile, is rejected (the old version keeps serving), and the event of the finished write reloads
//! it. Writing to a temp file and renaming, as `upload` and `plugins/build.sh` do, avoids that.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;

use super::config::{CONFIG_FILE, PoliciesConfig, SlotSettings};
use super::module::sha256_hex;
use super::runtime::PolicyRuntime;
use super::slot::Active;
use super::{PolicyError, Slot};

/// How long the directory must be quiet before a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// A stream of events never postpones a reload by more than this.
const MAX_DEBOUNCE: Duration = Duration::from_millis(500);

impl PolicyRuntime {
    /// Re-reads `policies.toml` and the configured modules now, slot by slot. A slot whose file and
    /// settings are unchanged is left alone; a candidate failing any check is rejected and the slot's
    /// current version keeps serving. The watcher calls this; it is public for tests and signals.
    pub async fn reload(&self) {
        let _admin = self.admin.lock().await;
        match PoliciesConfig::load(&self.dir) {
            Ok(config) => {
                *self.config_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                self.apply_locked(config).await;
            }
            Err(e) => {
                tracing::warn!("policies.toml rejected, every slot keeps its current version: {e}");
                for slot in Slot::ALL {
                    if self.cell(slot).active.load().settings.is_some() {
                        self.metrics.reload(slot, false);
                    }
                }
                *self.config_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
            }
        }
    }

    pub(super) async fn apply(&self, config: PoliciesConfig) {
        let _admin = self.admin.lock().await;
        self.apply_locked(config).await;
    }

    async fn apply_locked(&self, mut config: PoliciesConfig) {
        for slot in Slot::ALL {
            self.reload_slot(slot, config.slots.remove(&slot)).await;
        }
    }

    async fn reload_slot(&self, slot: Slot, desired: Option<SlotSettings>) {
        let cell = self.cell(slot);
        let current = cell.active.load_full();
        let Some(desired) = desired else {
            if current.settings.is_some() {
                tracing::info!(%slot, "no module configured any more: built-in rules answer");
                self.metrics.reload(slot, true);
                cell.swap(Active::default(), true);
            }
            return;
        };
        let path = self.dir.join(&desired.file);
        let read = tokio::task::spawn_blocking(move || std::fs::read(&path)).await;
        let read = read.unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(e) => {
                let reason = format!("cannot read {}: {e}", desired.file);
                self.reject(slot, &current, desired, reason);
                return;
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
            .check_blocking(slot, bytes.into(), settings.clone())
            .await
        {
            Ok(Ok(module)) => {
                tracing::debug!(%slot, elapsed_ms = started.elapsed().as_millis() as u64, "candidate checked");
                self.install(slot, settings, module, true);
            }
            Ok(Err(reason)) => self.reject(slot, &current, Arc::unwrap_or_clone(settings), reason),
            Err(e) => self.reject(
                slot,
                &current,
                Arc::unwrap_or_clone(settings),
                e.to_string(),
            ),
        }
    }

    /// Records a rejected candidate. The current version keeps serving; a slot that has no version yet
    /// takes the new settings (so its status names the right file) and keeps falling back.
    fn reject(&self, slot: Slot, current: &Active, desired: SlotSettings, reason: String) {
        tracing::warn!(%slot, file = %desired.file, "policy candidate rejected, current version keeps serving: {reason}");
        self.metrics.reload(slot, false);
        let cell = self.cell(slot);
        if current.module.is_none() {
            cell.swap(
                Active {
                    settings: Some(Arc::new(desired)),
                    module: None,
                },
                false,
            );
        }
        cell.reject(format!("{slot}: {reason}"));
    }
}

/// Starts the watcher task; it stops on `shutdown` or when the runtime is dropped.
pub(super) fn watch(
    runtime: &Arc<PolicyRuntime>,
    shutdown: CancellationToken,
) -> Result<(), PolicyError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if is_relevant(&event) => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("policies watcher: {e}"),
        })
        .map_err(|e| PolicyError::Internal(format!("starting the policies watcher: {e}")))?;
    watcher
        .watch(&runtime.dir, RecursiveMode::NonRecursive)
        .map_err(|e| PolicyError::Internal(format!("watching {}: {e}", runtime.dir.display())))?;

    let runtime = Arc::downgrade(runtime);
    tokio::spawn(async move {
        // Dropping the watcher stops its thread, so it lives exactly as long as this task.
        let _watcher = watcher;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                event = rx.recv() => if event.is_none() { break },
            }
            let give_up_at = Instant::now() + MAX_DEBOUNCE;
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) if Instant::now() < give_up_at => continue,
                    Ok(None) => return,
                    _ => break,
                }
            }
            let Some(runtime) = runtime.upgrade() else {
                break;
            };
            runtime.reload().await;
        }
    });
    Ok(())
}

fn is_relevant(event: &notify::Event) -> bool {
    let kind_counts = matches!(
        event.kind,
        EventKind::Create(_)
            | EventKind::Modify(_)
            | EventKind::Remove(_)
            | EventKind::Any
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    );
    kind_counts && event.paths.iter().any(|p| is_policy_file(p))
}

/// `policies.toml` or a `*.wasm` module, and not an editor's or our own temporary file.
pub fn is_policy_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let temporary = name.starts_with('.')
        || name.starts_with('#')
        || name.ends_with('~')
        || name == "4913"
        || [".swp", ".swx", ".swo", ".tmp", ".bak"]
            .iter()
            .any(|ext| name.ends_with(ext));
    !temporary && (name == CONFIG_FILE || name.ends_with(".wasm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_temp_files_are_ignored() {
        for name in ["policies.toml", "pricing.wasm"] {
            assert!(is_policy_file(Path::new(name)), "{name}");
        }
        for name in [
            ".pricing.wasm.swp",
            "pricing.wasm~",
            "4913",
            "#pricing.wasm#",
            ".pricing.wasm.42.tmp",
            "notes.txt",
        ] {
            assert!(!is_policy_file(Path::new(name)), "{name}");
        }
    }
}
