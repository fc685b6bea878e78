//! [`SlotKind`]: everything that makes one policy slot different from another, as types and functions.
//!
//! The mechanism (load, check, call under limits, fall back, metrics, reload, simulation tenants) is
//! written once over this trait; each slot is one small implementation in a file beside this one. A decision goes:
//! domain input → [`to_wit`](SlotKind::to_wit) → guest call → [`validate`](SlotKind::validate) (the
//! contract check) → [`finish`](SlotKind::finish) (host post-processing, e.g. pricing guardrails), or
//! [`fallback`](SlotKind::fallback) when anything on the way fails.

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmtime::Store;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{ComponentNamedList, InstancePre, Lift, Lower};

use crate::domain::Outcome;
use crate::policy::DecisionSource;

use super::super::call::{Failure, FailureKind};
use super::super::config::SlotSettings;
use super::super::limits::{CallState, Limits};
use super::super::slot::Slot;

pub trait SlotKind: Sized + Send + Sync + 'static {
    const SLOT: Slot;

    /// What the market asks, e.g. [`PricingRequest`](crate::policy::PricingRequest). Its JSON is
    /// what the decision log keeps and `policy replay` feeds back.
    type Input: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// What the market gets back, e.g. [`PriceQuote`](crate::policy::PriceQuote).
    type Output: Serialize + Send + 'static;
    /// The slot's WIT request record. Its serde form (snake_case fields) is the JSON shape of sample
    /// inputs in `policies.toml` and of `policy test` inputs.
    type WitInput: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// The guest's answer as the WIT bindings return it, before any check.
    type WitAnswer: Send + 'static;
    /// An answer that passed the contract check. Its JSON is what `policy check` prints and what the
    /// stateless check compares.
    type Answer: Serialize + Send + 'static;
    /// bindgen's `{World}Pre`: the component with its exports type-checked once, at load.
    type Pre: Clone + Send + Sync + 'static;
    /// bindgen's `{World}`: one instance's typed exports.
    type Bindings: Send + 'static;
    /// What the host remembers between decisions of one runtime or tenant. No slot keeps anything
    /// today: pricing's memory (each GPU's last booked quote) is in the database, so that replicas
    /// agree, and comes in with each request.
    type HostState: Default + Send + Sync + 'static;

    /// Checks the component's exports against the slot's world.
    fn pre(instance_pre: InstancePre<CallState>) -> wasmtime::Result<Self::Pre>;

    /// Checks the parameter and result types of every function of the slot's interface (exported as
    /// `export`) against the contract's, without instantiating. bindgen's `Pre` only looks the
    /// functions up by name; their types would otherwise be checked at the first call.
    fn typecheck(instance_pre: &InstancePre<CallState>, export: &str) -> wasmtime::Result<()>;

    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<Self::Bindings>;

    fn to_wit(input: &Self::Input, state: &Self::HostState) -> Self::WitInput;

    /// Bytes of variable-size data the input carries into the guest (checked against
    /// `max_input_bytes` before the call).
    fn input_size(input: &Self::WitInput) -> usize;

    /// One decision on an instance. The outer error is a trap or host error, the inner one the guest's
    /// own `err(...)`.
    fn call(
        bindings: &Self::Bindings,
        store: &mut Store<CallState>,
        config: &[(String, String)],
        input: &Self::WitInput,
    ) -> wasmtime::Result<Result<Self::WitAnswer, String>>;

    /// Many decisions in one guest call, answered in order. Slots without a batch export call
    /// [`call`](Self::call) in a loop on the same instance.
    fn call_batch(
        bindings: &Self::Bindings,
        store: &mut Store<CallState>,
        config: &[(String, String)],
        inputs: &[Self::WitInput],
    ) -> wasmtime::Result<Vec<Result<Self::WitAnswer, String>>> {
        inputs
            .iter()
            .map(|input| Self::call(bindings, &mut *store, config, input))
            .collect()
    }

    /// The contract check of one answer (finite prices, bounded minutes, output size...).
    fn validate(answer: Self::WitAnswer, limits: &Limits) -> Result<Self::Answer, Failure>;

    /// Turns a valid answer into the market's output; `source.fallback` is false.
    fn finish(
        state: &Self::HostState,
        settings: &SlotSettings,
        input: &Self::Input,
        answer: Self::Answer,
        source: DecisionSource,
    ) -> Self::Output;

    /// The slot's answer when its module cannot give one; `source.fallback` is true.
    fn fallback(input: &Self::Input, source: DecisionSource, failure: &Failure) -> Self::Output;

    /// The built-in rule: the answer when no module is configured for the slot (and, for pricing and
    /// booking timeout, the fallback's answer too).
    fn builtin(input: &Self::Input) -> Self::Output;

    /// The input used to exercise a module when `policies.toml` lists no samples for its slot.
    fn default_sample() -> serde_json::Value;

    /// What a canary's share is sticky by: the same key always goes to the same arm (pricing: the
    /// GPU; booking timeout: the booking; moderation: the review's GPU and text).
    fn routing_key(input: &Self::Input) -> String;

    /// The GPU a decision is about, for the decision log's `gpu_id` filter.
    fn gpu_id(input: &Self::Input) -> &str;

    /// What the decision comes down to, for comparing two modules' answers.
    fn outcome(output: &Self::Output) -> Outcome;

    /// The source inside an output: who decided, and the decision id the runtime gives it.
    fn source(output: &Self::Output) -> &DecisionSource;
    fn source_mut(output: &mut Self::Output) -> &mut DecisionSource;

    /// Inputs near `input` that exercise other branches, for the stateless check.
    fn variants(input: &Self::WitInput) -> Vec<Self::WitInput> {
        let _ = input;
        Vec::new()
    }
}

/// Checks that the interface exported as `export` has a function `func` whose type is exactly
/// `Params -> Results` (the Rust types bindgen generated from the contract).
pub fn typecheck_func<Params, Results>(
    instance_pre: &InstancePre<CallState>,
    export: &str,
    func: &str,
) -> wasmtime::Result<()>
where
    Params: ComponentNamedList + Lower,
    Results: ComponentNamedList + Lift,
{
    let component = instance_pre.component();
    let interface = component
        .get_export_index(None, export)
        .ok_or_else(|| wasmtime::format_err!("no exported instance `{export}`"))?;
    match component.get_export(Some(&interface), func) {
        Some((ComponentItem::ComponentFunc(ty), _)) => ty
            .typecheck::<Params, Results>(&instance_pre.instance_type())
            .map_err(|e| wasmtime::format_err!("function `{func}`: {e:#}")),
        Some(_) => Err(wasmtime::format_err!("`{func}` is not a function")),
        None => Err(wasmtime::format_err!("`{export}` has no function `{func}`")),
    }
}

/// The contract check of a guest's raw answer: its own `err(...)` is a failure too.
pub fn validated<K: SlotKind>(
    raw: Result<K::WitAnswer, String>,
    limits: &Limits,
) -> Result<K::Answer, Failure> {
    let answer = raw.map_err(|e| Failure::new(FailureKind::GuestError, e))?;
    K::validate(answer, limits)
}

/// A batch call must answer once per input, in order.
pub fn batch_answers<T>(answers: Vec<T>, inputs: usize) -> Result<Vec<T>, Failure> {
    if answers.len() == inputs {
        return Ok(answers);
    }
    Err(Failure::new(
        FailureKind::InvalidOutput,
        format!(
            "the batch call answered {} times for {inputs} inputs",
            answers.len()
        ),
    ))
}
