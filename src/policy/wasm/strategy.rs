//! [`Strategy`]: a policy under test in a simulation, the slot's built-in rules or a module served by a
//! [`Tenant`]. A simulation holds a list of them, one list per worker thread.

use std::path::Path;

use crate::policy::PricingRequest;

use super::error::PolicyError;
use super::kinds::{PricingSlot, SlotKind, TimeoutSlot};
use super::slot::Slot;
use super::tenant::{Tenant, TenantAnswer, TenantQuote};

/// A policy under test: the slot's built-in rules or a module. A simulation holds a list of these.
pub enum Strategy<K: SlotKind> {
    /// The built-in rules (pricing: the asking price, multiplier 1), the same code the server runs
    /// for a slot with no module.
    Builtin,
    Wasm(Tenant<K>),
}

pub type PricingStrategy = Strategy<PricingSlot>;
pub type TimeoutStrategy = Strategy<TimeoutSlot>;

impl<K: SlotKind> Strategy<K> {
    /// `builtin`, or the path of a module checked as [`Tenant::load`] does.
    pub fn load(spec: &str, policies_dir: Option<&Path>) -> Result<Self, PolicyError> {
        if spec == "builtin" {
            return Ok(Self::Builtin);
        }
        Tenant::load(Path::new(spec), policies_dir).map(Self::Wasm)
    }

    /// What the server would run for the slot with `policies_dir`: its configured module, or the
    /// built-in rules when `policies.toml` configures none.
    pub fn configured(policies_dir: &Path) -> Result<Self, PolicyError> {
        Ok(match Tenant::configured(policies_dir)? {
            Some(tenant) => Self::Wasm(tenant),
            None => Self::Builtin,
        })
    }

    /// `builtin` or `<file>@<sha256 prefix>`.
    pub fn name(&self) -> &str {
        match self {
            Self::Builtin => "builtin",
            Self::Wasm(tenant) => tenant.policy(),
        }
    }

    pub fn slot(&self) -> Slot {
        K::SLOT
    }

    pub fn decide(&mut self, input: &K::Input) -> TenantAnswer<K::Output> {
        match self {
            Self::Builtin => builtin_answer::<K>(input),
            Self::Wasm(tenant) => tenant.decide(input),
        }
    }

    pub fn decide_batch(&mut self, inputs: &[K::Input]) -> Vec<TenantAnswer<K::Output>> {
        match self {
            Self::Builtin => inputs.iter().map(builtin_answer::<K>).collect(),
            Self::Wasm(tenant) => tenant.decide_batch(inputs),
        }
    }

    /// See [`Tenant::check_stateless`]; the built-in rules keep no state.
    pub fn check_stateless(&mut self) -> Result<(), String> {
        match self {
            Self::Builtin => Ok(()),
            Self::Wasm(tenant) => tenant.check_stateless(),
        }
    }

    /// See [`Tenant::fork`].
    pub fn fork(&self) -> Self {
        match self {
            Self::Builtin => Self::Builtin,
            Self::Wasm(tenant) => Self::Wasm(tenant.fork()),
        }
    }
}

impl Strategy<PricingSlot> {
    pub fn quote(&mut self, request: &PricingRequest) -> TenantQuote {
        self.decide(request)
    }

    pub fn quote_batch(&mut self, requests: &[PricingRequest]) -> Vec<TenantQuote> {
        self.decide_batch(requests)
    }
}

fn builtin_answer<K: SlotKind>(input: &K::Input) -> TenantAnswer<K::Output> {
    TenantAnswer {
        output: K::builtin(input),
        fuel: 0,
        failure: None,
    }
}

/// A simulation moves strategies into worker threads.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<PricingStrategy>();
    send::<TimeoutStrategy>();
};
