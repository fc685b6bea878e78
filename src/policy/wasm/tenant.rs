//! Simulation tenants: one policy module serving one simulation, through the same checks, calls,
//! contract checks, guardrails and fallbacks as the live runtime.
//!
//! The one difference from the server is that a tenant keeps its instance between decisions (a
//! simulation is a single tenant, so nothing can leak to someone else): each call still gets a full
//! fuel budget and a fresh wall-clock deadline, and after any failure the instance is dropped and the
//! next decision instantiates a new one. Instance reuse is only faithful for a module whose answers do
//! not depend on earlier calls; [`Tenant::check_stateless`] flags one that does.
//!
//! Fuel reported per decision is the guest call's; the server's figure also includes instantiation.
//! Each tenant holding an instance occupies one slot of the engine's instance pool: keep tenants per
//! worker thread (see [`Tenant::fork`]), not one per sweep point alive at once.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use wasmtime::Store;

use crate::policy::{DecisionSource, PriceQuote, PricingRequest, TimeoutDecision};

use super::call::{self, Failure, FailureKind};
use super::checks;
use super::config::{PoliciesConfig, SlotSettings};
use super::error::PolicyError;
use super::kinds::{PricingSlot, SlotKind, TimeoutSlot, batch_answers, validated};
use super::limits::{CallState, Limits};
use super::module::{PolicyModule, read_module};
use super::signing::read_signature_beside;

/// One decision of a tenant or strategy.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantAnswer<O> {
    /// The final answer, exactly as the server would give it (fallback included).
    pub output: O,
    /// Fuel the guest call used; 0 for the built-in rules and for inputs never sent. A batch's fuel is
    /// shared evenly between its answers.
    pub fuel: u64,
    /// Why the fallback answered, if it did.
    pub failure: Option<FailureKind>,
}

pub type TenantQuote = TenantAnswer<PriceQuote>;
pub type TimeoutAnswer = TenantAnswer<TimeoutDecision>;

/// A checked module of slot `K` with its own instance and host state (none today: pricing's last
/// quotes come in with each request, as on the server). `Send`, not `Sync`: each thread
/// of a parallel simulation owns its tenants.
///
/// A tenant takes only its own slot's input: asking a pricing tenant for a timeout decision does not
/// compile.
///
/// ```compile_fail
/// use gpu_market::policy::TimeoutRequest;
/// use gpu_market::policy::wasm::PricingTenant;
///
/// fn ask(tenant: &mut PricingTenant, request: &TimeoutRequest) {
///     tenant.decide(request);
/// }
/// ```
pub struct Tenant<K: SlotKind> {
    module: Arc<PolicyModule<K>>,
    settings: Arc<SlotSettings>,
    policy: String,
    state: K::HostState,
    live: Option<Live<K>>,
}

pub type PricingTenant = Tenant<PricingSlot>;
pub type TimeoutTenant = Tenant<TimeoutSlot>;

/// An instance kept between calls, with its store.
struct Live<K: SlotKind> {
    store: Store<CallState>,
    bindings: K::Bindings,
}

impl<K: SlotKind> Live<K> {
    fn new(pre: &K::Pre, limits: &Limits) -> Result<Self, Failure> {
        let mut store = call::new_store(K::SLOT, limits)?;
        // Instantiation runs the guest's start code: it gets a decision's budget too.
        call::arm(&mut store, limits, limits.fuel, limits.max_output_bytes)?;
        let bindings = K::instantiate(pre, &mut store).map_err(|e| call::classify(&e, limits))?;
        Ok(Self { store, bindings })
    }
}

/// Runs `f` on the kept instance (instantiating one if there is none) with `fuel` and a fresh
/// deadline. The instance is kept only when the whole decision succeeds.
fn on_instance<K: SlotKind, T>(
    live: &mut Option<Live<K>>,
    pre: &K::Pre,
    limits: &Limits,
    fuel: u64,
    answer_bytes: usize,
    f: impl FnOnce(&K::Bindings, &mut Store<CallState>) -> wasmtime::Result<T>,
) -> (Result<T, Failure>, u64) {
    let mut current = match live.take() {
        Some(current) => current,
        None => match Live::<K>::new(pre, limits) {
            Ok(fresh) => fresh,
            Err(failure) => return (Err(failure), 0),
        },
    };
    if let Err(failure) = call::arm(&mut current.store, limits, fuel, answer_bytes) {
        return (Err(failure), 0);
    }
    let result = f(&current.bindings, &mut current.store).map_err(|e| call::classify(&e, limits));
    let used = call::fuel_used(&current.store, fuel);
    if result.is_ok() {
        *live = Some(current);
    }
    (result, used)
}

/// One checked answer from the kept instance; the instance is dropped on any failure.
fn answer_one<K: SlotKind>(
    live: &mut Option<Live<K>>,
    pre: &K::Pre,
    settings: &SlotSettings,
    input: &K::WitInput,
) -> (Result<K::Answer, Failure>, u64) {
    let limits = &settings.limits;
    if let Some(failure) = call::input_too_large(K::input_size(input), limits) {
        return (Err(failure), 0);
    }
    let answer_bytes = call::answer_budget::<K::WitAnswer>(limits, 0);
    let (raw, fuel) = on_instance(
        live,
        pre,
        limits,
        limits.fuel,
        answer_bytes,
        |bindings, store| K::call(bindings, store, &settings.config, input),
    );
    let answer = raw.and_then(|raw| validated::<K>(raw, limits));
    if answer.is_err() {
        *live = None;
    }
    (answer, fuel)
}

impl<K: SlotKind> Tenant<K> {
    /// Reads the module at `module_path` and checks it exactly as a hot reload of the slot would, under
    /// the slot's settings (limits, config, guardrails, samples) from `policies_dir/policies.toml`
    /// (`policies_dir` may also be that file itself), or the published defaults without one. A module failing a check is an
    /// [`InvalidModule`](PolicyError::InvalidModule) error naming the reason. When that
    /// `policies.toml` lists trusted keys, the signature file beside the module must verify.
    pub fn load(module_path: &Path, policies_dir: Option<&Path>) -> Result<Self, PolicyError> {
        let settings = SlotSettings::for_module(module_path, K::SLOT, policies_dir)?;
        Self::checked(module_path, settings)
    }

    /// The module `policies_dir/policies.toml` (or `policies_dir` itself, when it is a file)
    /// configures for the slot, if any.
    pub fn configured(policies_dir: &Path) -> Result<Option<Self>, PolicyError> {
        let Some(settings) = PoliciesConfig::load_from(policies_dir)?
            .slots
            .remove(&K::SLOT)
        else {
            return Ok(None);
        };
        let dir = if policies_dir.is_file() {
            policies_dir.parent().unwrap_or(Path::new("."))
        } else {
            policies_dir
        };
        Self::checked(&dir.join(&settings.file), settings).map(Some)
    }

    /// Reads the module at `path` and its signature file, and checks them as a reload would.
    fn checked(path: &Path, settings: SlotSettings) -> Result<Self, PolicyError> {
        let bytes = read_module(path)?;
        let signature = read_signature_beside(path)?.map(Into::into);
        let module = checks::check::<K>(bytes, signature, &settings, None)
            .module
            .map_err(|reason| PolicyError::InvalidModule {
                slot: K::SLOT,
                reason,
            })?;
        Ok(Self::new(module, Arc::new(settings)))
    }

    fn new(module: Arc<PolicyModule<K>>, settings: Arc<SlotSettings>) -> Self {
        Self {
            policy: module.label(),
            module,
            settings,
            state: K::HostState::default(),
            live: None,
        }
    }

    /// The same module with some `config` keys set (added when absent), checked again as a reload of
    /// changed settings would be: the sample inputs must still pass. For sweeps over a config key; the
    /// module is not compiled again.
    pub fn with_config(&self, overrides: &[(String, String)]) -> Result<Self, PolicyError> {
        let mut settings = SlotSettings::clone(&self.settings);
        for (key, value) in overrides {
            match settings.config.iter_mut().find(|(k, _)| k == key) {
                Some(entry) => entry.1 = value.clone(),
                None => settings.config.push((key.clone(), value.clone())),
            }
        }
        checks::check_samples(&self.module, &settings, &mut Vec::new(), &mut Vec::new()).map_err(
            |reason| PolicyError::InvalidModule {
                slot: K::SLOT,
                reason: format!("with config {overrides:?}: {reason}"),
            },
        )?;
        Ok(Self::new(self.module.clone(), Arc::new(settings)))
    }

    /// A tenant of the same checked module and settings, with no instance and an empty host state: for
    /// another thread or another simulation run.
    pub fn fork(&self) -> Self {
        Self::new(self.module.clone(), self.settings.clone())
    }

    /// `<file>@<sha256 prefix>`, as in each decision's source.
    pub fn policy(&self) -> &str {
        &self.policy
    }

    pub fn sha256(&self) -> &str {
        &self.module.sha256
    }

    pub fn limits(&self) -> &Limits {
        &self.settings.limits
    }

    /// The operator configuration passed to every call.
    pub fn config(&self) -> &[(String, String)] {
        &self.settings.config
    }

    /// Drops the kept instance (freeing its pool slot); the next decision instantiates again.
    pub fn release(&mut self) {
        self.live = None;
    }

    fn source(&self, fallback: bool) -> DecisionSource {
        DecisionSource::new(self.policy.clone(), fallback)
    }

    fn conclude(
        &self,
        input: &K::Input,
        answer: Result<K::Answer, Failure>,
        fuel: u64,
    ) -> TenantAnswer<K::Output> {
        match answer {
            Ok(answer) => TenantAnswer {
                output: K::finish(
                    &self.state,
                    &self.settings,
                    input,
                    answer,
                    self.source(false),
                ),
                fuel,
                failure: None,
            },
            Err(failure) => TenantAnswer {
                output: K::fallback(input, self.source(true), &failure),
                fuel,
                failure: Some(failure.kind),
            },
        }
    }

    /// One decision, as the server would answer it; never fails (the slot's fallback answers).
    pub fn decide(&mut self, input: &K::Input) -> TenantAnswer<K::Output> {
        let wit = K::to_wit(input, &self.state);
        let (answer, fuel) = answer_one(&mut self.live, &self.module.pre, &self.settings, &wit);
        self.conclude(input, answer, fuel)
    }

    /// Many decisions through the slot's batch call (pricing's `quote-batch`), in chunks of
    /// `max_batch`, each chunk with `fuel` × its length: as the server refreshes prices. All inputs
    /// are converted before any answer updates the host state, as in the server.
    pub fn decide_batch(&mut self, inputs: &[K::Input]) -> Vec<TenantAnswer<K::Output>> {
        let limits = self.settings.limits;
        let mut results: Vec<(Result<K::Answer, Failure>, u64)> = Vec::with_capacity(inputs.len());
        let mut sendable: Vec<(usize, K::WitInput)> = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            let wit = K::to_wit(input, &self.state);
            match call::input_too_large(K::input_size(&wit), &limits) {
                Some(failure) => results.push((Err(failure), 0)),
                None => {
                    results.push((Err(Failure::new(FailureKind::Host, "not answered")), 0));
                    sendable.push((i, wit));
                }
            }
        }
        for chunk in sendable.chunks(limits.max_batch) {
            let wits: Vec<K::WitInput> = chunk.iter().map(|(_, w)| w.clone()).collect();
            let fuel = limits.fuel.saturating_mul(wits.len() as u64);
            let config = &self.settings.config;
            let (raw, used) = on_instance(
                &mut self.live,
                &self.module.pre,
                &limits,
                fuel,
                call::answer_budget::<Result<K::WitAnswer, String>>(&limits, wits.len()),
                |b, store| K::call_batch(b, store, config, &wits),
            );
            let raw = raw.and_then(|answers| batch_answers(answers, wits.len()));
            let share = used / wits.len().max(1) as u64;
            match raw {
                Ok(answers) => {
                    for ((i, _), answer) in chunk.iter().zip(answers) {
                        results[*i] = (validated::<K>(answer, &limits), share);
                    }
                }
                Err(failure) => {
                    self.live = None;
                    for (i, _) in chunk {
                        results[*i] = (Err(failure.clone()), share);
                    }
                }
            }
        }
        if results.iter().any(|(answer, _)| answer.is_err()) {
            self.live = None;
        }
        inputs
            .iter()
            .zip(results)
            .map(|(input, (answer, fuel))| self.conclude(input, answer, fuel))
            .collect()
    }

    /// Runs the slot's samples and inputs derived from them once on fresh instances, then on one
    /// reused instance in a different order (backwards, then forwards), and compares the answers: a
    /// module that remembers earlier calls would give a simulation different figures than the server,
    /// which instantiates per call. The error names the first input whose answer changed.
    pub fn check_stateless(&mut self) -> Result<(), String> {
        let inputs = self.probe_inputs()?;
        let settings = self.settings.clone();
        let outcome = |live: &mut Option<Live<K>>, input: &K::WitInput| {
            let (answer, _) = answer_one(live, &self.module.pre, &settings, input);
            match answer {
                Ok(answer) => Ok(to_json(&answer)),
                Err(failure) => Err(failure.kind),
            }
        };
        let fresh: Vec<_> = inputs
            .iter()
            .map(|(_, input)| outcome(&mut None, input))
            .collect();
        let mut live = None;
        for i in (0..inputs.len()).rev().chain(0..inputs.len()) {
            let again = outcome(&mut live, &inputs[i].1);
            if again != fresh[i] {
                return Err(format!(
                    "{} answers {:?} differently after earlier calls on the same instance: {} on a \
                     fresh instance, {} on a reused one; its answers depend on state it keeps",
                    self.policy,
                    inputs[i].0,
                    describe(&fresh[i]),
                    describe(&again)
                ));
            }
        }
        Ok(())
    }

    /// The samples the checks use, each followed by the slot's variants of it.
    fn probe_inputs(&self) -> Result<Vec<(String, K::WitInput)>, String> {
        let mut samples: Vec<(String, serde_json::Value)> = self
            .settings
            .samples
            .iter()
            .map(|s| (s.name.clone(), s.input.clone()))
            .collect();
        if samples.is_empty() {
            samples.push(("built-in sample".into(), K::default_sample()));
        }
        let mut inputs = Vec::new();
        for (name, json) in samples {
            let input: K::WitInput = serde_json::from_value(json)
                .map_err(|e| format!("sample {name:?} does not match the contract: {e}"))?;
            let variants = K::variants(&input);
            for (j, variant) in variants.into_iter().enumerate() {
                inputs.push((format!("{name} (variant {})", j + 1), variant));
            }
            inputs.push((name, input));
        }
        Ok(inputs)
    }
}

fn to_json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_else(|e| serde_json::Value::String(e.to_string()))
}

fn describe(outcome: &Result<serde_json::Value, FailureKind>) -> String {
    match outcome {
        Ok(answer) => answer.to_string(),
        Err(kind) => format!("a failure ({kind})"),
    }
}

impl Tenant<PricingSlot> {
    /// [`decide`](Self::decide) under its pricing name.
    pub fn quote(&mut self, request: &PricingRequest) -> TenantQuote {
        self.decide(request)
    }

    /// [`decide_batch`](Self::decide_batch) under its pricing name.
    pub fn quote_batch(&mut self, requests: &[PricingRequest]) -> Vec<TenantQuote> {
        self.decide_batch(requests)
    }
}
