//! Deciding, once for every slot kind: take a snapshot of the slot, convert the input, call the module
//! on a fresh instance (on the calling thread when it fits a slice of the budget, see `inline.rs`;
//! batches on the blocking pool), check the answer, finish it (pricing: guardrails) or fall
//! back; count and measure every step.
//!
//! Each decision comes with a [`DecisionRecord`]: what shadow mode, canaries, replay and the decision
//! log (all generic over [`SlotKind`]) will keep. The `Policies` impl keeps only the output.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::policy::DecisionSource;

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
    /// One decision; never fails (the built-in rules or the slot's fallback answer).
    pub async fn decide(&self, host: &Host, input: &K::Input) -> Decided<K> {
        let active = self.active.load_full();
        let Some(settings) = active.settings.clone() else {
            return builtin(input);
        };
        let wit = K::to_wit(input, &self.state);
        let Some(module) = active.module.clone() else {
            let record = DecisionRecord::new(None, Some(wit), CallCost::default());
            return self.fall_back(host, &active, input, not_loaded(), record);
        };
        if let Some(failure) = input_too_large(K::input_size(&wit), &settings.limits) {
            let record = DecisionRecord::new(None, Some(wit), CallCost::default());
            return self.fall_back(host, &active, input, failure, record);
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
        self.conclude(host, &active, &settings, input, answer, record)
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
                    output: K::finish(&self.state, settings, input, answer, source(policy, false)),
                    record,
                }
            }
            Err(failure) => self.fall_back(host, active, input, failure, record),
        }
    }

    /// Counts calls to a module version.
    fn count(&self, host: &Host, module: &PolicyModule<K>, decisions: u64, cost: &CallCost) {
        self.calls.fetch_add(decisions, Ordering::Relaxed);
        host.metrics
            .call(K::SLOT, module.version(), decisions, cost);
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
        let output = K::fallback(input, source(policy, true), &failure);
        record.failure = Some(failure);
        Decided { output, record }
    }
}

fn source(policy: String, fallback: bool) -> DecisionSource {
    DecisionSource { policy, fallback }
}
