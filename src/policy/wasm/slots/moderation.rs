//! The review-moderation slot: WIT bindings, conversions, output validation and the fallback.

use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::policy::{
    BuiltinPolicies, DecisionSource, ModerationDecision, ModerationRequest, ModerationVerdict,
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
        world: "review-moderation-policy",
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

pub use bindings::exports::gpu_market::policy::review_moderation as wit;

pub type Pre = bindings::ReviewModerationPolicyPre<CallState>;

/// The review-moderation slot as a [`SlotKind`].
#[derive(Debug, Clone, Copy)]
pub struct ModerationSlot;

impl SlotKind for ModerationSlot {
    const SLOT: Slot = Slot::ReviewModeration;
    type Input = ModerationRequest;
    type Output = ModerationDecision;
    type WitInput = wit::ReviewFacts;
    type WitAnswer = wit::ModerationDecision;
    type Answer = (ModerationVerdict, String);
    type Pre = Pre;
    type Bindings = bindings::ReviewModerationPolicy;
    type HostState = ();

    fn pre(instance_pre: InstancePre<CallState>) -> wasmtime::Result<Pre> {
        Pre::new(instance_pre)
    }

    fn instantiate(
        pre: &Pre,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<bindings::ReviewModerationPolicy> {
        pre.instantiate(store)
    }

    fn to_wit(input: &ModerationRequest, _: &()) -> wit::ReviewFacts {
        to_wit(input)
    }

    fn input_size(input: &wit::ReviewFacts) -> usize {
        input_size(input)
    }

    fn call(
        bindings: &bindings::ReviewModerationPolicy,
        store: &mut Store<CallState>,
        config: &[(String, String)],
        input: &wit::ReviewFacts,
    ) -> wasmtime::Result<Result<wit::ModerationDecision, String>> {
        bindings
            .gpu_market_policy_review_moderation()
            .call_moderate(store, config, input)
    }

    fn validate(
        answer: wit::ModerationDecision,
        limits: &Limits,
    ) -> Result<(ModerationVerdict, String), Failure> {
        check(Ok(answer), limits, "").map(|d| (d.verdict, d.reason))
    }

    fn finish(
        _: &(),
        _: &SlotSettings,
        _: &ModerationRequest,
        (verdict, reason): (ModerationVerdict, String),
        source: DecisionSource,
    ) -> ModerationDecision {
        ModerationDecision {
            verdict,
            reason,
            source,
        }
    }

    fn fallback(
        _: &ModerationRequest,
        source: DecisionSource,
        failure: &Failure,
    ) -> ModerationDecision {
        fallback(&source.policy, failure)
    }

    fn builtin(_: &ModerationRequest) -> ModerationDecision {
        BuiltinPolicies::moderate_now()
    }

    fn default_sample() -> serde_json::Value {
        default_sample()
    }

    fn variants(input: &wit::ReviewFacts) -> Vec<wit::ReviewFacts> {
        let with = |edit: &dyn Fn(&mut wit::ReviewFacts)| {
            let mut variant = input.clone();
            edit(&mut variant);
            variant
        };
        vec![
            with(&|r| r.rating = 1),
            with(&|r| r.comment = None),
            with(&|r| r.reviewer_has_completed_booking = !r.reviewer_has_completed_booking),
            with(&|r| r.reviewer_reviews_today += 50),
        ]
    }

    fn typed_pre(pre: &SlotPre) -> Option<&Pre> {
        pre.moderation()
    }
}

pub fn pre(instance_pre: InstancePre<CallState>) -> wasmtime::Result<Pre> {
    Pre::new(instance_pre)
}

pub fn to_wit(request: &ModerationRequest) -> wit::ReviewFacts {
    wit::ReviewFacts {
        gpu_id: request.gpu_id.clone(),
        gpu_model: request.gpu_model.clone(),
        rating: request.rating,
        comment: request.comment.clone(),
        reviewer_has_completed_booking: request.reviewer_has_completed_booking,
        reviewer_reviews_today: request.reviewer_reviews_today,
        gpu_average_rating: request.gpu_average_rating,
        gpu_total_reviews: request.gpu_total_reviews,
        now_unix: request.now_unix,
    }
}

pub fn input_size(facts: &wit::ReviewFacts) -> usize {
    64 + facts.gpu_id.len() + facts.gpu_model.len() + facts.comment.as_ref().map_or(0, String::len)
}

pub fn call_one(
    pre: &Pre,
    limits: &Limits,
    config: &[(String, String)],
    facts: &wit::ReviewFacts,
) -> CallReport<Result<wit::ModerationDecision, String>> {
    call::run(limits, limits.fuel, |store| {
        let instance = pre.instantiate(&mut *store)?;
        instance
            .gpu_market_policy_review_moderation()
            .call_moderate(&mut *store, config, facts)
    })
}

pub fn check(
    answer: Result<wit::ModerationDecision, String>,
    limits: &Limits,
    policy: &str,
) -> Result<ModerationDecision, Failure> {
    let decision =
        answer.map_err(|e| Failure::new(FailureKind::GuestError, call::truncate(&e, 300)))?;
    if decision.reason.len() > limits.max_output_bytes {
        let message = format!(
            "reason is {} bytes, the limit is {}",
            decision.reason.len(),
            limits.max_output_bytes
        );
        return Err(Failure::new(FailureKind::InvalidOutput, message));
    }
    let verdict = match decision.verdict {
        wit::Verdict::Accept => ModerationVerdict::Accept,
        wit::Verdict::Reject => ModerationVerdict::Reject,
        wit::Verdict::Flag => ModerationVerdict::Flag,
    };
    Ok(ModerationDecision {
        verdict,
        reason: decision.reason,
        source: DecisionSource {
            policy: policy.to_owned(),
            fallback: false,
        },
    })
}

/// The slot's fallback: hold the review for a person to look at.
pub fn fallback(policy: &str, failure: &Failure) -> ModerationDecision {
    ModerationDecision {
        verdict: ModerationVerdict::Flag,
        reason: format!(
            "manual review (moderation policy unavailable: {})",
            failure.kind
        ),
        source: DecisionSource {
            policy: policy.to_owned(),
            fallback: true,
        },
    }
}

pub fn default_sample() -> serde_json::Value {
    serde_json::json!({
        "gpu_id": "gpu_sample", "gpu_model": "RTX 4090", "rating": 5, "comment": "fast and stable",
        "reviewer_has_completed_booking": true, "reviewer_reviews_today": 0,
        "gpu_average_rating": 4.5, "gpu_total_reviews": 10, "now_unix": 1_767_225_600
    })
}
