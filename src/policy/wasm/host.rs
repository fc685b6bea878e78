//! [`Host`]: what every slot's serving code shares: the policies directory and the metrics; and the
//! way guest calls run, each under a permit of its own slot.

use std::path::PathBuf;

use super::call::{Failure, FailureKind};
use super::engine::permits;
use super::metrics::PolicyMetrics;
use super::slot::Slot;

pub struct Host {
    /// Canonical path of the policies directory.
    pub dir: PathBuf,
    pub metrics: PolicyMetrics,
}

impl Host {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            metrics: PolicyMetrics::default(),
        }
    }

    /// Runs blocking guest work of `slot` on the blocking pool under one of the slot's permits
    /// (process-wide, like its instance pool): the pool is never exhausted, a flood of slow modules
    /// cannot take every blocking thread, and a slot waiting for permits never delays another slot.
    pub async fn call_blocking<T: Send + 'static>(
        &self,
        slot: Slot,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Failure> {
        let permit = permits(slot)
            .map_err(|e| Failure::new(FailureKind::Host, e.to_string()))?
            .acquire_owned()
            .await
            .map_err(|_| Failure::new(FailureKind::Host, "runtime is shutting down"))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            lower_cpu_priority();
            work()
        })
        .await
        .map_err(|e| Failure::new(FailureKind::Host, format!("call task failed: {e}")))
    }
}

/// Nice level of the threads that run guest code.
const GUEST_NICE: i32 = 10;

thread_local! {
    static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Puts the calling blocking-pool thread at nice [`GUEST_NICE`], once: a module spinning until its
/// deadline then takes CPU from the server's own threads (request handling, the database, the epoch
/// ticker) only when they leave it idle, so it cannot stretch other requests. Deadlines are wall
/// clock, so the guest's own limit is unchanged. The thread stays lowered for any later blocking work,
/// which is all background work. Best effort: a failure leaves the priority as it was.
fn lower_cpu_priority() {
    LOWERED.with(|lowered| {
        if lowered.replace(true) {
            return;
        }
        #[cfg(target_os = "linux")]
        // SAFETY: setpriority has no memory-safety preconditions; on Linux, PRIO_PROCESS with id 0
        // applies to the calling thread only.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, GUEST_NICE);
        }
    });
}
