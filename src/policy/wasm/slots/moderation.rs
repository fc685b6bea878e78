//! The review-moderation slot: WIT bindings, conversions, output validation and the fallback.

use wasmtime::component::InstancePre;

use crate::policy::{DecisionSource, ModerationDecision, ModerationRequest, ModerationVerdict};

use super::super::call::{self, CallReport, Failure, FailureKind};
use super::super::limits::{CallState, Limits};

mod bindings {
    wasmtime::component::bindgen!({
        path: "plugins/wit",
        world: "review-moderation-policy",
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

pub use bindings::exports::gpu_market::policy::review_moderation as wit;

pub type Pre = bindings::ReviewModerationPolicyPre<CallState>;

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
