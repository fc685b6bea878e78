//! The booking-timeout slot: WIT bindings, conversions, output validation and the fallback.

use wasmtime::component::InstancePre;

use crate::policy::{DecisionSource, TimeoutAction, TimeoutDecision, TimeoutRequest};

use super::super::call::{self, CallReport, Failure, FailureKind};
use super::super::limits::{CallState, Limits};

mod bindings {
    wasmtime::component::bindgen!({
        path: "plugins/wit",
        world: "booking-timeout-policy",
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

pub use bindings::exports::gpu_market::policy::booking_timeout as wit;

pub type Pre = bindings::BookingTimeoutPolicyPre<CallState>;

/// Longest extension or grace a module may grant in one decision: a week.
pub const MAX_MINUTES: u32 = 7 * 24 * 60;

pub fn pre(instance_pre: InstancePre<CallState>) -> wasmtime::Result<Pre> {
    Pre::new(instance_pre)
}

pub fn to_wit(request: &TimeoutRequest) -> wit::BookingFacts {
    wit::BookingFacts {
        booking_id: request.booking_id.clone(),
        gpu_id: request.gpu_id.clone(),
        start_unix: request.start_unix,
        end_unix: request.end_unix,
        now_unix: request.now_unix,
        last_heartbeat_unix: request.last_heartbeat_unix,
        job_id: request.job_id.clone(),
        extensions: request.extensions,
    }
}

pub fn input_size(facts: &wit::BookingFacts) -> usize {
    64 + facts.booking_id.len() + facts.gpu_id.len() + facts.job_id.as_ref().map_or(0, String::len)
}

pub fn call_one(
    pre: &Pre,
    limits: &Limits,
    config: &[(String, String)],
    facts: &wit::BookingFacts,
) -> CallReport<Result<wit::TimeoutDecision, String>> {
    call::run(limits, limits.fuel, |store| {
        let instance = pre.instantiate(&mut *store)?;
        instance
            .gpu_market_policy_booking_timeout()
            .call_decide(&mut *store, config, facts)
    })
}

/// Checks the answer against the contract and converts it to the market's decision.
pub fn check(
    answer: Result<wit::TimeoutDecision, String>,
    limits: &Limits,
    policy: &str,
) -> Result<TimeoutDecision, Failure> {
    let decision =
        answer.map_err(|e| Failure::new(FailureKind::GuestError, call::truncate(&e, 300)))?;
    let invalid = |m: String| Err(Failure::new(FailureKind::InvalidOutput, m));
    let action = match decision.action {
        wit::TimeoutAction::Keep => TimeoutAction::Keep,
        wit::TimeoutAction::Expire => TimeoutAction::Expire,
        wit::TimeoutAction::Extend(m) | wit::TimeoutAction::Grace(m)
            if m == 0 || m > MAX_MINUTES =>
        {
            return invalid(format!("{m} minutes is outside 1..={MAX_MINUTES}"));
        }
        wit::TimeoutAction::Extend(m) => TimeoutAction::Extend(m),
        wit::TimeoutAction::Grace(m) => TimeoutAction::Grace(m),
    };
    if decision.reason.len() > limits.max_output_bytes {
        return invalid(format!(
            "reason is {} bytes, the limit is {}",
            decision.reason.len(),
            limits.max_output_bytes
        ));
    }
    Ok(TimeoutDecision {
        action,
        reason: decision.reason,
        source: DecisionSource {
            policy: policy.to_owned(),
            fallback: false,
        },
    })
}

/// The slot's fallback: the booking ends at its booked end time.
pub fn fallback(request: &TimeoutRequest, policy: &str, failure: &Failure) -> TimeoutDecision {
    let (action, when) = if request.now_unix >= request.end_unix {
        (TimeoutAction::Expire, "booked time is over")
    } else {
        (TimeoutAction::Keep, "booked time remains")
    };
    TimeoutDecision {
        action,
        reason: format!("{when} (timeout policy unavailable: {})", failure.kind),
        source: DecisionSource {
            policy: policy.to_owned(),
            fallback: true,
        },
    }
}

pub fn default_sample() -> serde_json::Value {
    serde_json::json!({
        "booking_id": "bk_sample", "gpu_id": "gpu_sample", "start_unix": 1_767_225_600,
        "end_unix": 1_767_229_200, "now_unix": 1_767_229_200, "last_heartbeat_unix": 1_767_229_170,
        "job_id": "job_sample", "extensions": 0
    })
}
