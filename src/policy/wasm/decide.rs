//! Deciding, once for every slot kind: take a snapshot of the slot, convert the input, call the module
//! on a fresh instance (on the calling thread when it fits a slice of the budget, see `inline.rs`;
//! batches on the blocking pool), check the answer, finish it (pricing: guardrails) or fall
//! back; count and measure every step.
//!
//! Each decision comes with a [`DecisionRecord`]: what shadow mode, canaries, replay and the decision
//! log (all generic over [`SlotKind`]) will keep. The `Policies` impl keeps only the output.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::domain::{DecisionEntry, DecisionId, DecisionRole, Timestamp};
use crate::policy::DecisionSource;
use crate::request_context;

use super::call::{CallCost, CallReport, Failure, FailureKind, input_too_large};
use super::cell::{Active, SlotCell};
use super::config::SlotSettings;
use super::host::Host;
use super::kinds::{SlotKind, validated};
use super::module::PolicyModule;

/// One decision and how it was made.
pub struct Decided<K: SlotKind> {
    pub output: K::Output,
    pub record: DecisionRecord<K>,
}

/// How a decision was made.
pub struct DecisionRecord<K: SlotKind> {
    /// The version asked (its `sha256`, `file`); None when the built-in rules answered or the slot has
    /// no loaded version.
    pub module: Option<Arc<PolicyModule<K>>>,
    /// What the module was sent; None when the built-in rules answered.
    pub input: Option<K::WitInput>,
    /// Why the fallback answered; None when the module's answer was used.
    pub failure: Option<Failure>,
    /// Fuel and time of the guest call (a batch's cost is shared evenly by its decisions).
    pub cost: CallCost,
}

impl<K: SlotKind> DecisionRecord<K> {
    pub fn fallback(&self) -> bool {
        self.failure.is_some()
    }

    fn new(
        module: Option<Arc<PolicyModule<K>>>,
        input: Option<K::WitInput>,
        cost: CallCost,
    ) -> Self {
        Self {
            module,
            input,
            failure: None,
            cost,
        }
    }
}

fn not_loaded() -> Failure {
    Failure::new(
        FailureKind::NotLoaded,
        "no version of the configured module passed its checks",
    )
}

fn builtin<K: SlotKind>(input: &K::Input) -> Decided<K> {
    Decided {
        output: K::builtin(input),
        record: DecisionRecord::new(None, None, CallCost::default()),
    }
}

fn shared(cost: &CallCost, decisions: usize) -> CallCost {
    let n = decisions.max(1);
    CallCost {
        fuel_used: cost.fuel_used / n as u64,
        elapsed: cost.elapsed / n as u32,
        peak_memory_bytes: cost.peak_memory_bytes,
    }
}

impl<K: SlotKind> SlotCell<K> {
    /// One live decision; never fails (the built-in rules or the slot's fallback answer). A running
    /// canary answers its share; a running shadow is handed the input afterwards; with the decision
    /// log attached, the decision (and the shadow's) is recorded and the output names its id.
    pub async fn decide(&self, host: &Host, input: &K::Input) -> Decided<K> {
        let active = self.active.load_full();
        let tried = self.candidates.load_full();
        let canary = tried
            .canary
            .as_ref()
            .filter(|c| c.sees_traffic(&active) && c.routes(input));
        let mut decided = match canary {
            Some(canary) => {
                let decided = self.decide_on(host, &canary.active, input).await;
                canary.count(&decided.record);
                decided
            }
            None => self.decide_on(host, &active, input).await,
        };
        if !host.decisions.enabled() {
            return decided;
        }
        let id = DecisionId::generate();
        K::source_mut(&mut decided.output).decision_id = Some(id.clone());
        let request_id = request_context::request_id();
        if let Some(shadow) = tried.shadow.as_ref().filter(|s| s.sees_traffic(&active)) {
            shadow.offer(input, &id, request_id.clone());
        }
        let role = if canary.is_some() {
            DecisionRole::Canary
        } else {
            DecisionRole::Live
        };
        host.decisions
            .record(entry(id, role, None, request_id, input, &decided))
            .await;
        decided
    }

    /// One decision by the version in `active` (the live one or a canary's), counted in the slot.
    async fn decide_on(&self, host: &Host, active: &Active<K>, input: &K::Input) -> Decided<K> {
        let Some(settings) = active.settings.clone() else {
            return builtin(input);
        };
        let wit = K::to_wit(input, &self.state);
        let Some(module) = active.module.clone() else {
            let record = DecisionRecord::new(None, Some(wit), CallCost::default());
            return self.fall_back(host, active, input, not_loaded(), record);
        };
        if let Some(failure) = input_too_large(K::input_size(&wit), &settings.limits) {
            let record = DecisionRecord::new(None, Some(wit), CallCost::default());
            return self.fall_back(host, active, input, failure, record);
        }
        // Most calls fit a slice of the budget and run right here, without a thread hop.
        let data = (module.clone(), settings.clone(), wit);
        let (report, data) = host
            .call_fitting(
                K::SLOT,
                &module.inline,
                &settings.limits,
                data,
                |(module, settings, wit), attempt| module.call_within(settings, wit, attempt),
            )
            .await;
        let wit = data.map(|(_, _, wit)| wit);
        self.count(host, &module, 1, &report.cost);
        let record = DecisionRecord::new(Some(module.clone()), wit, report.cost);
        let answer = report
            .result
            .and_then(|raw| validated::<K>(raw, &settings.limits));
        self.conclude(host, active, &settings, input, answer, record)
    }

    /// Many decisions in order, through the slot's batch call in chunks of `max_batch` (each chunk a
    /// fresh instance with a decision's fuel per input). Every input is converted before any answer
    /// updates the host state.
    pub async fn decide_batch(&self, host: &Host, inputs: &[K::Input]) -> Vec<Decided<K>> {
        let active = self.active.load_full();
        let Some(settings) = active.settings.clone() else {
            return inputs.iter().map(builtin).collect();
        };
        let mut decided: Vec<Option<Decided<K>>> = Vec::with_capacity(inputs.len());
        let mut sendable = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            let wit = K::to_wit(input, &self.state);
            let failure = match &active.module {
                None => Some(not_loaded()),
                Some(_) => input_too_large(K::input_size(&wit), &settings.limits),
            };
            match failure {
                Some(failure) => {
                    let record = DecisionRecord::new(None, Some(wit), CallCost::default());
                    decided.push(Some(self.fall_back(host, &active, input, failure, record)));
                }
                None => {
                    decided.push(None);
                    sendable.push((i, wit));
                }
            }
        }
        if let Some(module) = active.module.clone() {
            let mut sendable = sendable.into_iter().peekable();
            while sendable.peek().is_some() {
                let (indices, wits): (Vec<usize>, Vec<K::WitInput>) =
                    sendable.by_ref().take(settings.limits.max_batch).unzip();
                let n = indices.len();
                let call = {
                    let (module, settings) = (module.clone(), settings.clone());
                    move || (module.call_batch(&settings, &wits), wits)
                };
                let (report, wits): (_, Vec<Option<K::WitInput>>) = match host
                    .call_blocking(K::SLOT, call)
                    .await
                {
                    Ok((report, wits)) => (report, wits.into_iter().map(Some).collect()),
                    Err(failure) => (CallReport::failed(failure), (0..n).map(|_| None).collect()),
                };
                self.count(host, &module, n as u64, &report.cost);
                let cost = shared(&report.cost, n);
                let answers: Vec<Result<Result<K::WitAnswer, String>, Failure>> =
                    match report.result {
                        Ok(answers) => answers.into_iter().map(Ok).collect(),
                        Err(failure) => (0..n).map(|_| Err(failure.clone())).collect(),
                    };
                for ((i, wit), answer) in indices.into_iter().zip(wits).zip(answers) {
                    let answer = answer.and_then(|raw| validated::<K>(raw, &settings.limits));
                    let record = DecisionRecord::new(Some(module.clone()), wit, cost);
                    decided[i] =
                        Some(self.conclude(host, &active, &settings, &inputs[i], answer, record));
                }
            }
        }
        decided
            .into_iter()
            .zip(inputs)
            .map(|(d, input)| d.unwrap_or_else(|| builtin(input)))
            .collect()
    }

    /// Finishes a valid answer, or falls back.
    fn conclude(
        &self,
        host: &Host,
        active: &Active<K>,
        settings: &SlotSettings,
        input: &K::Input,
        answer: Result<K::Answer, Failure>,
        record: DecisionRecord<K>,
    ) -> Decided<K> {
        match answer {
            Ok(answer) => {
                let policy = active.policy_label();
                Decided {
                    output: K::finish(
                        &self.state,
                        settings,
                        input,
                        answer,
                        DecisionSource::new(policy, false),
                    ),
                    record,
                }
            }
            Err(failure) => self.fall_back(host, active, input, failure, record),
        }
    }

    /// Counts calls to a module version.
    fn count(&self, host: &Host, module: &PolicyModule<K>, decisions: u64, cost: &CallCost) {
        self.calls.fetch_add(decisions, Ordering::Relaxed);
        module
            .series
            .get_or_init(|| host.metrics.series(K::SLOT, module.version()))
            .call(decisions, cost);
    }

    /// The slot's fallback answer; counted and logged.
    fn fall_back(
        &self,
        host: &Host,
        active: &Active<K>,
        input: &K::Input,
        failure: Failure,
        mut record: DecisionRecord<K>,
    ) -> Decided<K> {
        if failure.kind != FailureKind::NotLoaded {
            self.failures.fetch_add(1, Ordering::Relaxed);
            self.failed(&failure);
        }
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        host.metrics
            .fallback(K::SLOT, active.version(), failure.kind);
        let policy = active.policy_label();
        tracing::warn!(slot = %K::SLOT, %policy, kind = %failure.kind, "policy fell back: {}", failure.message);
        let output = K::fallback(input, DecisionSource::new(policy, true), &failure);
        record.failure = Some(failure);
        Decided { output, record }
    }
}

/// One decision by `active` on a fresh instance on the blocking pool with its whole budget, counted
/// nowhere: a shadow's, off the request path (its worker runs one call at a time, so it holds at most
/// one instance of the slot's spare pool room and no live permit).
pub async fn decide_blocking<K: SlotKind>(active: &Active<K>, input: &K::Input) -> Decided<K> {
    let (Some(settings), Some(module)) = (active.settings.clone(), active.module.clone()) else {
        return builtin(input);
    };
    let state = K::HostState::default();
    let wit = K::to_wit(input, &state);
    let policy = active.policy_label();
    let failed = |failure: Failure, wit: Option<K::WitInput>, cost: CallCost| {
        let output = K::fallback(input, DecisionSource::new(policy.clone(), true), &failure);
        let mut record = DecisionRecord::new(Some(module.clone()), wit, cost);
        record.failure = Some(failure);
        Decided { output, record }
    };
    if let Some(failure) = input_too_large(K::input_size(&wit), &settings.limits) {
        return failed(failure, Some(wit), CallCost::default());
    }
    let call = {
        let (module, settings) = (module.clone(), settings.clone());
        move || {
            let report = module.call(&settings, &wit);
            (report, wit)
        }
    };
    let (report, wit) = match tokio::task::spawn_blocking(call).await {
        Ok((report, wit)) => (report, Some(wit)),
        Err(e) => (
            CallReport::failed(Failure::new(
                FailureKind::Host,
                format!("call task failed: {e}"),
            )),
            None,
        ),
    };
    let cost = report.cost;
    match report
        .result
        .and_then(|raw| validated::<K>(raw, &settings.limits))
    {
        Ok(answer) => Decided {
            output: K::finish(
                &state,
                &settings,
                input,
                answer,
                DecisionSource::new(policy.clone(), false),
            ),
            record: DecisionRecord::new(Some(module.clone()), wit, cost),
        },
        Err(failure) => failed(failure, wit, cost),
    }
}

/// The decision log's entry for one decision.
pub fn entry<K: SlotKind>(
    id: DecisionId,
    role: DecisionRole,
    live_id: Option<DecisionId>,
    request_id: Option<String>,
    input: &K::Input,
    decided: &Decided<K>,
) -> DecisionEntry {
    let record = &decided.record;
    let json = |value: Result<String, serde_json::Error>| {
        value.unwrap_or_else(|e| serde_json::json!({ "unserializable": e.to_string() }).to_string())
    };
    let source = K::source(&decided.output);
    DecisionEntry {
        id,
        slot: K::SLOT.as_str(),
        role,
        live_id,
        policy: source.policy.clone(),
        module_sha256: record.module.as_ref().map(|m| m.sha256.clone()),
        input: json(serde_json::to_string(input)),
        output: json(serde_json::to_string(&decided.output)),
        outcome: K::outcome(&decided.output),
        fallback: source.fallback,
        failure_kind: record.failure.as_ref().map(|f| f.kind.as_str().to_owned()),
        failure: record.failure.as_ref().map(|f| f.message.clone()),
        fuel: record.cost.fuel_used,
        duration_us: record.cost.elapsed.as_micros() as u64,
        request_id: request_id.filter(|id| !id.is_empty()),
        gpu_id: Some(K::gpu_id(input).to_owned()),
        decided_at: Timestamp::now(),
    }
}
