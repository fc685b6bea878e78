//! Candidates: a module a slot tries before it serves everything. A **shadow** sees every live input
//! off the request path and only has its answers logged beside the live ones; a **canary** answers a
//! sticky share of live decisions and stops itself when it fails too often. Written once for every
//! slot kind; the reports that compare candidates with the live module read the decision log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::domain::{DecisionId, DecisionRole};

use super::call::FailureKind;
use super::cell::Active;
use super::config::{CanarySettings, CandidateRole, ShadowSettings};
use super::decide::DecisionRecord;
use super::host::DecisionSink;
use super::kinds::SlotKind;
use super::module::PolicyModule;

/// Inputs waiting for a shadow; more are dropped (and counted) rather than delay anything live.
const SHADOW_QUEUE: usize = 1024;

/// A shadow sleeps off its CPU debt once it passes this, so that short calls are not paced by a
/// timer coarser than themselves.
const SHADOW_PACING_STEP: Duration = Duration::from_millis(5);

/// Where a candidate stands. Only `Running` candidates see traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum CandidateState {
    Running,
    /// The canary's failure rate passed its threshold: everything went back to the live module.
    Stopped(String),
    /// Made live by `promote`.
    Promoted,
    /// Its promotion was rolled back; it sees no traffic until its file or settings change.
    RolledBack,
}

/// What a candidate does with live traffic.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Shadow(ShadowSettings),
    Canary(CanarySettings),
}

impl Plan {
    pub fn role(&self) -> CandidateRole {
        match self {
            Self::Shadow(_) => CandidateRole::Shadow,
            Self::Canary(_) => CandidateRole::Canary,
        }
    }
}

/// One live input for a shadow, with the served decision it is compared with.
struct ShadowJob<K: SlotKind> {
    input: K::Input,
    live_id: DecisionId,
    request_id: Option<String>,
}

/// A loaded candidate with its counters. Replaced as a whole when its file or settings change.
pub struct Candidate<K: SlotKind> {
    pub plan: Plan,
    /// Its module and the settings it was checked under.
    pub active: Active<K>,
    pub loaded_at: DateTime<Utc>,
    state: Mutex<CandidateState>,
    pub counters: Arc<CandidateCounters>,
    shadow_queue: Option<mpsc::Sender<ShadowJob<K>>>,
}

/// Calls made by a candidate in this process.
#[derive(Default)]
pub struct CandidateCounters {
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    /// Shadow inputs dropped because the shadow was behind (its queue full).
    pub dropped: AtomicU64,
}

/// One row of a slot's candidates in `GET /v1/admin/policies`.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateStatus {
    pub role: CandidateRole,
    pub file: String,
    pub sha256: Option<String>,
    pub policy: Option<String>,
    /// `running`, `stopped`, `promoted`, `rolled_back`, `same_as_live` (its version is the live
    /// one), or `not_loaded` (no version passed its checks; see `last_error`).
    pub state: String,
    /// Why a canary stopped.
    pub reason: Option<String>,
    /// A canary's share of live decisions, in percent.
    pub percent: Option<f64>,
    pub loaded_at: Option<DateTime<Utc>>,
    pub calls: u64,
    pub failures: u64,
    pub dropped: u64,
    /// The latest rejected version of this candidate, cleared when one is accepted.
    pub last_error: Option<String>,
}

impl<K: SlotKind> Candidate<K> {
    /// A checked candidate; a shadow starts its worker (on the current tokio runtime), which ends when
    /// the candidate is dropped.
    pub fn start(plan: Plan, module: Arc<PolicyModule<K>>, sink: Arc<DecisionSink>) -> Self {
        let settings = Arc::new(match &plan {
            Plan::Shadow(shadow) => shadow.settings.clone(),
            Plan::Canary(canary) => canary.settings.clone(),
        });
        let counters = Arc::new(CandidateCounters::default());
        let shadow_queue = match &plan {
            Plan::Shadow(shadow) => {
                let (queue, jobs) = mpsc::channel(SHADOW_QUEUE);
                let worker = ShadowWorker {
                    active: Active {
                        settings: Some(settings.clone()),
                        module: Some(module.clone()),
                    },
                    sink,
                    counters: counters.clone(),
                    cpu_percent: shadow.cpu_percent,
                };
                tokio::spawn(worker.run(jobs));
                Some(queue)
            }
            Plan::Canary(_) => None,
        };
        Self {
            plan,
            active: Active {
                settings: Some(settings),
                module: Some(module),
            },
            loaded_at: Utc::now(),
            state: Mutex::new(CandidateState::Running),
            counters,
            shadow_queue,
        }
    }

    pub fn module(&self) -> Option<&Arc<PolicyModule<K>>> {
        self.active.module.as_ref()
    }

    pub fn sha256(&self) -> Option<&str> {
        self.module().map(|m| m.sha256.as_str())
    }

    pub fn state(&self) -> CandidateState {
        lock(&self.state).clone()
    }

    pub fn set_state(&self, state: CandidateState) {
        *lock(&self.state) = state;
    }

    /// Running, and not the version that is live already.
    pub fn sees_traffic(&self, live: &Active<K>) -> bool {
        let live_sha = live.module.as_ref().map(|m| m.sha256.as_str());
        self.state() == CandidateState::Running && self.sha256() != live_sha
    }

    /// Whether a canary answers this input: the first 64 bits of sha256 of the routing key pick one
    /// of 10 000 buckets, so the split is sticky across requests, restarts and replicas.
    pub fn routes(&self, input: &K::Input) -> bool {
        let Plan::Canary(canary) = &self.plan else {
            return false;
        };
        in_share(&K::routing_key(input), canary.percent)
    }

    /// Counts a canary decision and stops the canary when its failure rate passes the threshold.
    pub fn count(&self, record: &DecisionRecord<K>) {
        let calls = self.counters.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let failed = record
            .failure
            .as_ref()
            .is_some_and(|f| f.kind != FailureKind::NotLoaded);
        let failures = self.counters.failures.load(Ordering::Relaxed)
            + if failed {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                1
            } else {
                0
            };
        let Plan::Canary(canary) = &self.plan else {
            return;
        };
        let rate = failures as f64 / calls as f64;
        if calls >= canary.stop_min_calls && rate > canary.stop_failure_rate {
            let mut state = lock(&self.state);
            if *state == CandidateState::Running {
                let reason = format!(
                    "failure rate {rate:.3} ({failures} of {calls} calls) passed the threshold {}",
                    canary.stop_failure_rate
                );
                tracing::warn!(slot = %K::SLOT, file = %canary.settings.file, "canary stopped, the live module answers everything: {reason}");
                *state = CandidateState::Stopped(reason);
            }
        }
    }

    /// Queues a live input for the shadow; never waits.
    pub fn offer(&self, input: &K::Input, live_id: &DecisionId, request_id: Option<String>) {
        let Some(queue) = &self.shadow_queue else {
            return;
        };
        let job = ShadowJob {
            input: input.clone(),
            live_id: live_id.clone(),
            request_id,
        };
        if queue.try_send(job).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn status(&self, live: &Active<K>, last_error: Option<String>) -> CandidateStatus {
        let (state, reason) = match self.state() {
            CandidateState::Running if !self.sees_traffic(live) => ("same_as_live", None),
            CandidateState::Running => ("running", None),
            CandidateState::Stopped(reason) => ("stopped", Some(reason)),
            CandidateState::Promoted => ("promoted", None),
            CandidateState::RolledBack => ("rolled_back", None),
        };
        let (file, percent) = match &self.plan {
            Plan::Shadow(shadow) => (shadow.settings.file.clone(), None),
            Plan::Canary(canary) => (canary.settings.file.clone(), Some(canary.percent)),
        };
        CandidateStatus {
            role: self.plan.role(),
            file,
            sha256: self.sha256().map(str::to_owned),
            policy: self.module().map(|m| m.label()),
            state: state.to_owned(),
            reason,
            percent,
            loaded_at: Some(self.loaded_at),
            calls: self.counters.calls.load(Ordering::Relaxed),
            failures: self.counters.failures.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            last_error,
        }
    }
}

/// Runs a shadow's calls one at a time, each on a fresh instance on the blocking pool under the
/// shadow's own limits, paced so that they take at most `cpu_percent` of one core.
struct ShadowWorker<K: SlotKind> {
    active: Active<K>,
    sink: Arc<DecisionSink>,
    counters: Arc<CandidateCounters>,
    cpu_percent: f64,
}

impl<K: SlotKind> ShadowWorker<K> {
    async fn run(self, mut jobs: mpsc::Receiver<ShadowJob<K>>) {
        let idle_per_busy = 100.0 / self.cpu_percent - 1.0;
        let mut debt = Duration::ZERO;
        while let Some(job) = jobs.recv().await {
            let started = std::time::Instant::now();
            let decided = super::decide::decide_blocking(&self.active, &job.input).await;
            self.counters.calls.fetch_add(1, Ordering::Relaxed);
            if decided.record.fallback() {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
            }
            let entry = super::decide::entry(
                DecisionId::generate(),
                DecisionRole::Shadow,
                Some(job.live_id),
                job.request_id,
                &job.input,
                &decided,
            );
            self.sink.record(entry).await;
            debt += started.elapsed().mul_f64(idle_per_busy);
            if debt >= SHADOW_PACING_STEP {
                tokio::time::sleep(debt).await;
                debt = Duration::ZERO;
            }
        }
    }
}

/// Whether `key` falls in the first `percent` of 10 000 buckets, by the first 64 bits of its sha256.
fn in_share(key: &str, percent: f64) -> bool {
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let bucket = u64::from_be_bytes(first) % 10_000;
    (bucket as f64) < percent * 100.0
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::in_share;

    #[test]
    fn a_share_is_the_configured_percentage_within_statistical_bounds_and_sticky() {
        let keys: Vec<String> = (0..20_000).map(|i| format!("gpu_{i:08x}")).collect();
        for percent in [1.0, 10.0, 33.3, 50.0, 90.0] {
            let taken = keys.iter().filter(|k| in_share(k, percent)).count() as f64;
            let (n, p) = (keys.len() as f64, percent / 100.0);
            let sigma = (n * p * (1.0 - p)).sqrt();
            assert!(
                (taken - n * p).abs() <= 5.0 * sigma,
                "{percent} %: {taken} of {n}, expected {} ± {}",
                n * p,
                5.0 * sigma
            );
        }
        assert!(keys.iter().all(|k| in_share(k, 100.0)));
        assert!(!keys.iter().any(|k| in_share(k, 0.0)));
        // Sticky: the same key, the same answer; a larger share keeps everyone already in it.
        for key in &keys[..1000] {
            assert_eq!(in_share(key, 25.0), in_share(key, 25.0));
            if in_share(key, 10.0) {
                assert!(in_share(key, 25.0));
            }
        }
    }
}
