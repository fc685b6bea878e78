//! The booking-timeout slot: WIT bindings, conversions, the contract check, the built-in rule (end
//! at the booked end) and the fallback (the same rule, saying why).

use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::domain::Outcome;
use crate::policy::{DecisionSource, TimeoutAction, TimeoutDecision, TimeoutRequest};

use super::super::call::{Failure, FailureKind};
use super::super::config::SlotSettings;
use super::super::limits::{CallState, Limits};
use super::super::slot::Slot;
use super::slot_kind::{SlotKind, typecheck_func};

mod bindings {
    wasmtime::component::bindgen!({
        path: "plugins/wit",
        world: "booking-timeout-policy",
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

use bindings::exports::gpu_market::policy::booking_timeout as wit;

/// Longest extension or grace a module may grant in one decision: a week.
pub const MAX_MINUTES: u32 = 7 * 24 * 60;

/// The booking-timeout slot as a [`SlotKind`].
#[derive(Debug, Clone, Copy)]
pub struct TimeoutSlot;

impl SlotKind for TimeoutSlot {
    const SLOT: Slot = Slot::BookingTimeout;
    type Input = TimeoutRequest;
    type Output = TimeoutDecision;
    type WitInput = wit::BookingFacts;
    type WitAnswer = wit::TimeoutDecision;
    /// Serialized as `[{"action": ..., "minutes": ...}, reason]` by `policy test`.
    type Answer = (TimeoutAction, String);
    type Pre = bindings::BookingTimeoutPolicyPre<CallState>;
    type Bindings = bindings::BookingTimeoutPolicy;
    type HostState = ();

    fn pre(instance_pre: InstancePre<CallState>) -> wasmtime::Result<Self::Pre> {
        Self::Pre::new(instance_pre)
    }

    fn typecheck(instance_pre: &InstancePre<CallState>, export: &str) -> wasmtime::Result<()> {
        typecheck_func::<
            (&[(String, String)], &wit::BookingFacts),
            (Result<wit::TimeoutDecision, String>,),
        >(instance_pre, export, "decide")
    }

    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<bindings::BookingTimeoutPolicy> {
        pre.instantiate(store)
    }

    fn to_wit(request: &TimeoutRequest, _: &()) -> wit::BookingFacts {
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

    fn routing_key(request: &TimeoutRequest) -> String {
        request.booking_id.clone()
    }

    fn gpu_id(request: &TimeoutRequest) -> &str {
        &request.gpu_id
    }

    fn outcome(decision: &TimeoutDecision) -> Outcome {
        Outcome::Verdict(decision.action.word())
    }

    fn source(decision: &TimeoutDecision) -> &DecisionSource {
        &decision.source
    }

    fn source_mut(decision: &mut TimeoutDecision) -> &mut DecisionSource {
        &mut decision.source
    }

    fn input_size(facts: &wit::BookingFacts) -> usize {
        64 + facts.booking_id.len()
            + facts.gpu_id.len()
            + facts.job_id.as_ref().map_or(0, String::len)
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

    /// Extensions and grace periods of 1 minute to a week, and a reason within the output limit.
    fn validate(
        decision: wit::TimeoutDecision,
        limits: &Limits,
    ) -> Result<(TimeoutAction, String), Failure> {
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
        Ok((action, decision.reason))
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
        request: &TimeoutRequest,
        source: DecisionSource,
        failure: &Failure,
    ) -> TimeoutDecision {
        let (action, when) = at_booked_end(request);
        TimeoutDecision {
            action,
            reason: format!("{when} (timeout policy unavailable: {})", failure.kind),
            source,
        }
    }

    fn builtin(request: &TimeoutRequest) -> TimeoutDecision {
        let (action, when) = at_booked_end(request);
        TimeoutDecision {
            action,
            reason: when.to_owned(),
            source: DecisionSource::builtin(),
        }
    }

    fn default_sample() -> serde_json::Value {
        serde_json::json!({
            "booking_id": "bk_sample", "gpu_id": "gpu_sample", "start_unix": 1_767_225_600,
            "end_unix": 1_767_229_200, "now_unix": 1_767_229_200, "last_heartbeat_unix": 1_767_229_170,
            "job_id": "job_sample", "extensions": 0
        })
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
}

/// The one timeout rule the host knows: a booking ends at its booked end.
fn at_booked_end(request: &TimeoutRequest) -> (TimeoutAction, &'static str) {
    if request.now_unix >= request.end_unix {
        (TimeoutAction::Expire, "booked time is over")
    } else {
        (TimeoutAction::Keep, "booked time remains")
    }
}
