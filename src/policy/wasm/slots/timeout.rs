//! The booking-timeout slot: WIT bindings, conversions, output validation and the fallback.

use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::policy::{
    BuiltinPolicies, DecisionSource, TimeoutAction, TimeoutDecision, TimeoutRequest,
};

use super::super::Slot;
use super::super::call::{self, CallReport, Failure, FailureKind};
use super::super::config::SlotSettings;
use super::super::kind::SlotKind;
use super::super::limits::{CallState, Limits};
use super::SlotPre;

mod bindings {
    wasmtime::component::bindgen!({
        path: "plugins/wit",
        world: "booking-timeout-policy",
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

pub use bindings::exports::gpu_market::policy::booking_timeout as wit;

pub type Pre = bindings::BookingTimeoutPolicyPre<CallState>;

/// The booking-timeout slot as a [`SlotKind`].
#[derive(Debug, Clone, Copy)]
pub struct TimeoutSlot;

impl SlotKind for TimeoutSlot {
    const SLOT: Slot = Slot::BookingTimeout;
    type Input = TimeoutRequest;
    type Output = TimeoutDecision;
    type WitInput = wit::BookingFacts;
    type WitAnswer = wit::TimeoutDecision;
    type Answer = (TimeoutAction, String);
    type Pre = Pre;
    type Bindings = bindings::BookingTimeoutPolicy;
    type HostState = ();

    fn pre(instance_pre: InstancePre<CallState>) -> wasmtime::Result<Pre> {
        Pre::new(instance_pre)
    }

    fn instantiate(
        pre: &Pre,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<bindings::BookingTimeoutPolicy> {
        pre.instantiate(store)
    }

    fn to_wit(input: &TimeoutRequest, _: &()) -> wit::BookingFacts {
        to_wit(input)
    }

    fn input_size(input: &wit::BookingFacts) -> usize {
        input_size(input)
    }

    fn call(
        bindings: &bindings::BookingTimeoutPolicy,
        store: &mut Store<CallState>,
        config: &[(String, String)],
        input: &wit::BookingFacts,
    ) -> wasmtime::Result<Result<wit::TimeoutDecision, String>> {
        bindings
            .gpu_market_policy_booking_timeout()
            .call_decide(store, config, input)
    }

    fn validate(
        answer: wit::TimeoutDecision,
        limits: &Limits,
    ) -> Result<(TimeoutAction, String), Failure> {
        check(Ok(answer), limits, "").map(|d| (d.action, d.reason))
    }

    fn finish(
        _: &(),
        _: &SlotSettings,
        _: &TimeoutRequest,
        (action, reason): (TimeoutAction, String),
        source: DecisionSource,
    ) -> TimeoutDecision {
        TimeoutDecision {
            action,
            reason,
            source,
        }
    }

    fn fallback(
        input: &TimeoutRequest,
        source: DecisionSource,
        failure: &Failure,
    ) -> TimeoutDecision {
        fallback(input, &source.policy, failure)
    }

    fn builtin(input: &TimeoutRequest) -> TimeoutDecision {
        BuiltinPolicies::timeout_now(input)
    }

    fn default_sample() -> serde_json::Value {
        default_sample()
    }

    fn variants(input: &wit::BookingFacts) -> Vec<wit::BookingFacts> {
        let with = |edit: &dyn Fn(&mut wit::BookingFacts)| {
            let mut variant = input.clone();
            edit(&mut variant);
            variant
        };
        vec![
            with(&|b| b.now_unix = b.end_unix - 60),
            with(&|b| b.now_unix = b.end_unix + 600),
            with(&|b| b.last_heartbeat_unix = None),
            with(&|b| b.job_id = None),
            with(&|b| b.extensions += 2),
        ]
    }

    fn typed_pre(pre: &SlotPre) -> Option<&Pre> {
        pre.timeout()
    }
}

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
