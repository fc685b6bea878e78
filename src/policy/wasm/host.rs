//! [`Host`]: what every slot's serving code shares: the policies directory, the metrics, the
//! decision log's sink, the trusted signing keys and the compile cache; and the way guest calls run,
//! each under a permit of its own slot.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc::Sender;

use crate::domain::DecisionEntry;

use super::cache::ArtifactCache;
use super::call::{CallReport, Failure, FailureKind};
use super::engine::permits;
use super::inline::{Attempt, InlineGate, ThreadCpuClock};
use super::limits::Limits;
use super::metrics::PolicyMetrics;
use super::signing::TrustedKeys;
use super::slot::Slot;

pub struct Host {
    /// Canonical path of the policies directory.
    pub dir: PathBuf,
    pub metrics: PolicyMetrics,
    /// Code this host compiled earlier; None: every candidate is compiled.
    pub cache: Option<Arc<ArtifactCache>>,
    /// The keys of the last `policies.toml` read without error. Uploads and rollbacks are verified
    /// against these, not against the keys a slot's serving version was accepted under: a slot that
    /// refused the new keys (its module is not signed by them) still takes only their signatures.
    trusted_keys: ArcSwap<TrustedKeys>,
    pub decisions: Arc<DecisionSink>,
}

/// Where decisions go once the server attaches the decision log's writer; until then (and in the CLI
/// helpers) they are not recorded and carry no decision id.
#[derive(Default)]
pub struct DecisionSink {
    writer: OnceLock<Sender<DecisionEntry>>,
}

impl DecisionSink {
    /// Sends every later decision to `writer`; false when a writer is attached already.
    pub fn attach(&self, writer: Sender<DecisionEntry>) -> bool {
        self.writer.set(writer).is_ok()
    }

    pub fn enabled(&self) -> bool {
        self.writer.get().is_some()
    }

    /// Hands `entry` to the writer. Waits only when the writer is a whole queue behind (the database
    /// is slower than the decisions): back-pressure rather than a lost entry.
    pub async fn record(&self, entry: DecisionEntry) {
        if let Some(writer) = self.writer.get()
            && writer.send(entry).await.is_err()
        {
            tracing::warn!("the decision log's writer has stopped; a decision was not recorded");
        }
    }
}

impl Host {
    pub fn new(dir: PathBuf, cache: Option<Arc<ArtifactCache>>) -> Self {
        Self {
            dir,
            metrics: PolicyMetrics::default(),
            decisions: Arc::default(),
            trusted_keys: ArcSwap::default(),
            cache,
        }
    }

    pub fn trusted_keys(&self) -> Arc<TrustedKeys> {
        self.trusted_keys.load_full()
    }

    pub fn set_trusted_keys(&self, keys: TrustedKeys) {
        self.trusted_keys.store(Arc::new(keys));
    }

    /// Runs blocking guest work of `slot` on the blocking pool under one of the slot's permits
    /// (process-wide, like its instance pool): the pool is never exhausted, a flood of slow modules
    /// cannot take every blocking thread, and a slot waiting for permits never delays another slot.
    pub async fn call_blocking<T: Send + 'static>(
        &self,
        slot: Slot,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Failure> {
        let permit = permit(slot).await?;
        on_blocking_pool(permit, work).await
    }

    /// Runs one guest call of `slot` under one of the slot's permits: first on the calling thread with
    /// a slice of the budget while `gate` is open, and, if that slice ran out, again on the blocking
    /// pool with the whole budget (see `inline.rs`). `work(data, attempt)` makes a fresh instance each
    /// time; `data` comes back unless the blocking task failed. The cost reported is both attempts'.
    pub async fn call_fitting<D, T>(
        &self,
        slot: Slot,
        gate: &InlineGate,
        limits: &Limits,
        data: D,
        work: fn(&D, Attempt) -> CallReport<T>,
    ) -> (CallReport<T>, Option<D>)
    where
        D: Send + 'static,
        T: Send + 'static,
    {
        let permit = match permit(slot).await {
            Ok(permit) => permit,
            Err(failure) => return (CallReport::failed(failure), Some(data)),
        };
        let mut spent = None;
        if gate.open() {
            let attempt = Attempt::inline(limits);
            let clock = ThreadCpuClock::start();
            // A panic in the host's call code fails this decision, as a panicked blocking task does.
            let report = std::panic::catch_unwind(AssertUnwindSafe(|| work(&data, attempt)))
                .unwrap_or_else(|_| {
                    CallReport::failed(Failure::new(FailureKind::Host, "call panicked"))
                });
            match &report.result {
                Err(failure) if attempt.overran(failure, limits) => {
                    // A deadline that found the thread waiting for a core says nothing of the module.
                    let preempted = failure.kind == FailureKind::Deadline
                        && clock.mostly_waited(attempt.timeout);
                    if !preempted {
                        gate.close();
                    }
                    spent = Some(report.cost);
                }
                _ => return (report, Some(data)),
            }
        }
        let full = Attempt::full(limits);
        let done = on_blocking_pool(permit, move || {
            let report = work(&data, full);
            (report, data)
        })
        .await;
        match done {
            Ok((mut report, data)) => {
                if let Some(spent) = spent {
                    report.cost.fuel_used += spent.fuel_used;
                    report.cost.elapsed += spent.elapsed;
                }
                (report, Some(data))
            }
            Err(failure) => (CallReport::failed(failure), None),
        }
    }
}

async fn permit(slot: Slot) -> Result<OwnedSemaphorePermit, Failure> {
    permits(slot)
        .map_err(|e| Failure::new(FailureKind::Host, e.to_string()))?
        .acquire_owned()
        .await
        .map_err(|_| Failure::new(FailureKind::Host, "runtime is shutting down"))
}

async fn on_blocking_pool<T: Send + 'static>(
    permit: OwnedSemaphorePermit,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
    .map_err(|e| Failure::new(FailureKind::Host, format!("call task failed: {e}")))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::policy::wasm::call::CallCost;

    static INLINE_ATTEMPTS: AtomicUsize = AtomicUsize::new(0);

    /// A call that needs more than the inline slice of fuel but fits the slot's budget.
    fn needs_the_whole_budget(data: &u32, attempt: Attempt) -> CallReport<u32> {
        if attempt == Attempt::inline(&Limits::default()) {
            INLINE_ATTEMPTS.fetch_add(1, Ordering::SeqCst);
            return CallReport {
                result: Err(Failure::new(FailureKind::OutOfFuel, "slice spent")),
                cost: CallCost {
                    fuel_used: attempt.fuel,
                    ..CallCost::default()
                },
            };
        }
        CallReport {
            result: Ok(*data + 1),
            cost: CallCost {
                fuel_used: 7,
                ..CallCost::default()
            },
        }
    }

    /// An inline attempt whose deadline fires; `busy` says whether the thread ran through it.
    fn late(busy: bool, attempt: Attempt) -> CallReport<u32> {
        if attempt != Attempt::inline(&Limits::default()) {
            return CallReport {
                result: Ok(1),
                cost: CallCost::default(),
            };
        }
        if busy {
            let clock = ThreadCpuClock::start();
            while clock.mostly_waited(attempt.timeout * 2) {
                std::hint::black_box(());
            }
        } else {
            std::thread::sleep(attempt.timeout * 2);
        }
        CallReport::failed(Failure::new(FailureKind::Deadline, "slice's deadline"))
    }

    #[tokio::test]
    async fn a_deadline_that_found_the_thread_waiting_leaves_the_version_inline() {
        let host = Host::new(PathBuf::from("."), None);
        let (gate, limits) = (InlineGate::default(), Limits::default());
        // Preempted (here: asleep) through the slice's deadline: answered on the pool, gate open.
        let (report, _) = host
            .call_fitting(Slot::Pricing, &gate, &limits, false, |busy, attempt| {
                late(*busy, attempt)
            })
            .await;
        assert_eq!(report.result, Ok(1));
        assert!(
            gate.open(),
            "a preempted call does not send its version to the pool"
        );
        // Running through it: the module is slow, and its version goes to the pool.
        let (report, _) = host
            .call_fitting(Slot::Pricing, &gate, &limits, true, |busy, attempt| {
                late(*busy, attempt)
            })
            .await;
        assert_eq!(report.result, Ok(1));
        assert!(!gate.open());
    }

    #[tokio::test]
    async fn a_call_that_outgrows_the_inline_slice_is_answered_on_the_pool_with_the_whole_budget() {
        let host = Host::new(PathBuf::from("."), None);
        let (gate, limits) = (InlineGate::default(), Limits::default());
        let (report, data) = host
            .call_fitting(Slot::Pricing, &gate, &limits, 41, needs_the_whole_budget)
            .await;
        assert_eq!(report.result, Ok(42));
        assert_eq!(data, Some(41));
        // Both attempts are paid for.
        assert_eq!(report.cost.fuel_used, Attempt::inline(&limits).fuel + 7);
        assert!(!gate.open(), "the version goes to the pool for a while");
        let (report, _) = host
            .call_fitting(Slot::Pricing, &gate, &limits, 1, needs_the_whole_budget)
            .await;
        assert_eq!(report.result, Ok(2));
        assert_eq!(
            INLINE_ATTEMPTS.load(Ordering::SeqCst),
            1,
            "no second slice while closed"
        );
    }
}
