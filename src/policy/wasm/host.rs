//! [`Host`]: what every slot's serving code shares: the policies directory, the metrics, and the
//! permits that bound guest calls in flight.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::call::{Failure, FailureKind};
use super::engine::MAX_CONCURRENT_CALLS;
use super::metrics::PolicyMetrics;

pub struct Host {
    /// Canonical path of the policies directory.
    pub dir: PathBuf,
    pub metrics: PolicyMetrics,
    /// Bounds guest calls in flight, so the instance pool is never exhausted and a flood of slow
    /// modules cannot take every blocking thread.
    permits: Arc<Semaphore>,
}

impl Host {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            metrics: PolicyMetrics::default(),
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_CALLS)),
        }
    }

    /// Runs blocking guest work on the blocking pool under a concurrency permit.
    pub async fn call_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Failure> {
        let permit = self
            .permits
            .clone()
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
