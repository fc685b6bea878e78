//! What each slot adds to the shared mechanism: its typed bindings, conversions, output checks and
//! fallback. Everything else (loading, limits, reload, metrics) is slot-agnostic.

pub mod moderation;
pub mod pricing;
pub mod timeout;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmtime::component::InstancePre;

use super::Slot;
use super::call::{CallCost, Failure, FailureKind};
use super::config::SlotSettings;
use super::limits::CallState;

/// A module's pre-instantiated form, typed by the slot's world.
pub enum SlotPre {
    Pricing(pricing::Pre),
    BookingTimeout(timeout::Pre),
    ReviewModeration(moderation::Pre),
}

/// Why a JSON input could not be run.
#[derive(Debug)]
pub struct BadInput(pub String);

impl SlotPre {
    /// Type-checks the component's exports against the slot's world.
    pub fn new(slot: Slot, instance_pre: InstancePre<CallState>) -> wasmtime::Result<Self> {
        Ok(match slot {
            Slot::Pricing => Self::Pricing(pricing::pre(instance_pre)?),
            Slot::BookingTimeout => Self::BookingTimeout(timeout::pre(instance_pre)?),
            Slot::ReviewModeration => Self::ReviewModeration(moderation::pre(instance_pre)?),
        })
    }

    pub fn pricing(&self) -> Option<&pricing::Pre> {
        if let Self::Pricing(pre) = self {
            Some(pre)
        } else {
            None
        }
    }

    pub fn timeout(&self) -> Option<&timeout::Pre> {
        if let Self::BookingTimeout(pre) = self {
            Some(pre)
        } else {
            None
        }
    }

    pub fn moderation(&self) -> Option<&moderation::Pre> {
        if let Self::ReviewModeration(pre) = self {
            Some(pre)
        } else {
            None
        }
    }

    /// Runs one decision from a JSON input shaped like the slot's WIT request record (snake_case
    /// field names) and returns the checked answer as JSON. Used by sample checks and `policy test`.
    pub fn run_json(
        &self,
        settings: &SlotSettings,
        input: &serde_json::Value,
    ) -> Result<(Result<serde_json::Value, Failure>, CallCost), BadInput> {
        let limits = &settings.limits;
        let config = settings.config.as_slice();
        Ok(match self {
            Self::Pricing(pre) => {
                let request: pricing::wit::PricingRequest = parse(input)?;
                guard_size(
                    pricing::input_size(&request),
                    limits.max_input_bytes,
                    || {
                        let report = pricing::call_one(pre, limits, config, &request);
                        (
                            report
                                .result
                                .and_then(|a| pricing::check(a, limits))
                                .and_then(to_json),
                            report.cost,
                        )
                    },
                )
            }
            Self::BookingTimeout(pre) => {
                let facts: timeout::wit::BookingFacts = parse(input)?;
                guard_size(timeout::input_size(&facts), limits.max_input_bytes, || {
                    let report = timeout::call_one(pre, limits, config, &facts);
                    (
                        report
                            .result
                            .and_then(|a| timeout::check(a, limits, ""))
                            .and_then(|d| to_json((d.action, d.reason))),
                        report.cost,
                    )
                })
            }
            Self::ReviewModeration(pre) => {
                let facts: moderation::wit::ReviewFacts = parse(input)?;
                guard_size(
                    moderation::input_size(&facts),
                    limits.max_input_bytes,
                    || {
                        let report = moderation::call_one(pre, limits, config, &facts);
                        (
                            report
                                .result
                                .and_then(|a| moderation::check(a, limits, ""))
                                .and_then(|d| to_json((d.verdict, d.reason))),
                            report.cost,
                        )
                    },
                )
            }
        })
    }
}

fn parse<T: DeserializeOwned>(input: &serde_json::Value) -> Result<T, BadInput> {
    serde_json::from_value(input.clone()).map_err(|e| BadInput(e.to_string()))
}

fn to_json<T: Serialize>(value: T) -> Result<serde_json::Value, Failure> {
    serde_json::to_value(value).map_err(|e| Failure::new(FailureKind::Host, e.to_string()))
}

fn guard_size(
    size: usize,
    max: usize,
    call: impl FnOnce() -> (Result<serde_json::Value, Failure>, CallCost),
) -> (Result<serde_json::Value, Failure>, CallCost) {
    if size > max {
        let failure = Failure::new(
            FailureKind::InputTooLarge,
            format!("input is {size} bytes, the limit is {max}"),
        );
        return (Err(failure), CallCost::default());
    }
    call()
}

/// The input used to exercise a module when `policies.toml` lists no samples for its slot.
pub fn default_sample(slot: Slot) -> serde_json::Value {
    match slot {
        Slot::Pricing => pricing::default_sample(),
        Slot::BookingTimeout => timeout::default_sample(),
        Slot::ReviewModeration => moderation::default_sample(),
    }
}
