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
            work()
        })
        .await
        .map_err(|e| Failure::new(FailureKind::Host, format!("call task failed: {e}")))
    }
}
