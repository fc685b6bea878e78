//! Hot reload: a watcher on the policies directory that calls back (the runtime reloads) once the
//! directory has been quiet for a moment.
//!
//! Events are debounced (the directory must be quiet for [`DEBOUNCE`]) and filtered by name: only
//! `policies.toml`, `*.wasm` and their signatures `*.wasm.sig` count (a signature copied after its
//! module must reload it), editor temp files (`.swp`, `~`, `4913`, `#...#`) and our own
//! `.tmp` files do not. A module written in place may still be seen half-written; it then fails to
//! compile, is rejected (the old version keeps serving), and the event of the finished write reloads
//! it. Writing to a temp file and renaming, as `upload` and `plugins/build.sh` do, avoids that.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;

use super::config::CONFIG_FILE;
use super::error::PolicyError;
use super::signing::SIGNATURE_SUFFIX;

/// How long the directory must be quiet before a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// A stream of events never postpones a reload by more than this.
const MAX_DEBOUNCE: Duration = Duration::from_millis(500);

/// Starts the watcher task on `dir`. After each quiet period following relevant events it awaits
/// `on_change()`; it stops on `shutdown` or when `on_change` returns None (its target is gone).
pub fn spawn<F, Fut>(
    dir: &Path,
    shutdown: CancellationToken,
    on_change: F,
) -> Result<(), PolicyError>
where
    F: Fn() -> Option<Fut> + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
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
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|e| PolicyError::Internal(format!("watching {}: {e}", dir.display())))?;

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
            let Some(reload) = on_change() else {
                break;
            };
            reload.await;
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

/// `policies.toml`, a `*.wasm` module or its signature, and not an editor's or our own temporary
/// file.
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
    let module = name.strip_suffix(SIGNATURE_SUFFIX).unwrap_or(name);
    !temporary && (name == CONFIG_FILE || module.ends_with(".wasm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_temp_files_are_ignored() {
        for name in ["policies.toml", "pricing.wasm", "pricing.wasm.sig"] {
            assert!(is_policy_file(Path::new(name)), "{name}");
        }
        for name in [
            ".pricing.wasm.swp",
            "pricing.wasm~",
            "4913",
            "#pricing.wasm#",
            ".pricing.wasm.42.tmp",
            ".pricing.wasm.sig.42.tmp",
            "policies.toml.sig",
            "notes.txt",
        ] {
            assert!(!is_policy_file(Path::new(name)), "{name}");
        }
    }
}
