//! The review-moderation slot: WIT bindings, conversions, the contract check, the built-in rule
//! (accept) and the fallback (hold the review for a person).

use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::domain::Outcome;
use crate::policy::{DecisionSource, ModerationDecision, ModerationRequest, ModerationVerdict};

use super::super::call::{Failure, FailureKind};
use super::super::config::SlotSettings;
use super::super::limits::{CallState, Limits};
use super::super::slot::Slot;
use super::slot_kind::{SlotKind, typecheck_func};

mod bindings {
    wasmtime::component::bindgen!({
        path: "plugins/wit",
        world: "review-moderation-policy",
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

use bindings::exports::gpu_market::policy::review_moderation as wit;

/// The review-moderation slot as a [`SlotKind`].
#[derive(Debug, Clone, Copy)]
pub struct ModerationSlot;

impl SlotKind for ModerationSlot {
    const SLOT: Slot = Slot::ReviewModeration;
    type Input = ModerationRequest;
    type Output = ModerationDecision;
    type WitInput = wit::ReviewFacts;
    type WitAnswer = wit::ModerationDecision;
    /// Serialized as `[verdict, reason]` by `policy test`.
    type Answer = (ModerationVerdict, String);
    type Pre = bindings::ReviewModerationPolicyPre<CallState>;
    type Bindings = bindings::ReviewModerationPolicy;
    type HostState = ();

    fn pre(instance_pre: InstancePre<CallState>) -> wasmtime::Result<Self::Pre> {
        Self::Pre::new(instance_pre)
    }

    fn typecheck(instance_pre: &InstancePre<CallState>, export: &str) -> wasmtime::Result<()> {
        typecheck_func::<
            (&[(String, String)], &wit::ReviewFacts),
            (Result<wit::ModerationDecision, String>,),
        >(instance_pre, export, "moderate")
    }

    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<bindings::ReviewModerationPolicy> {
        pre.instantiate(store)
    }

    fn to_wit(request: &ModerationRequest, _: &()) -> wit::ReviewFacts {
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

    fn routing_key(request: &ModerationRequest) -> String {
        // A review is decided once: the same review sent again goes to the same arm.
        format!(
            "{}\u{1f}{}\u{1f}{}",
            request.gpu_id,
            request.rating,
            request.comment.as_deref().unwrap_or_default()
        )
    }

    fn gpu_id(request: &ModerationRequest) -> &str {
        &request.gpu_id
    }

    fn outcome(decision: &ModerationDecision) -> Outcome {
        Outcome::Verdict(decision.verdict.as_str().to_owned())
    }

    fn source(decision: &ModerationDecision) -> &DecisionSource {
        &decision.source
    }

    fn source_mut(decision: &mut ModerationDecision) -> &mut DecisionSource {
        &mut decision.source
    }

    fn input_size(facts: &wit::ReviewFacts) -> usize {
        64 + facts.gpu_id.len()
            + facts.gpu_model.len()
            + facts.comment.as_ref().map_or(0, String::len)
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

    /// A reason within the output limit (the verdict is a closed WIT enum).
    fn validate(
        decision: wit::ModerationDecision,
        limits: &Limits,
    ) -> Result<(ModerationVerdict, String), Failure> {
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
        Ok((verdict, decision.reason))
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

    /// Unlike the built-in rule, which trusts every review, a failed policy holds the review for a
    /// person: the operator asked for moderation, so accepting unchecked would be wrong.
    fn fallback(
        _: &ModerationRequest,
        source: DecisionSource,
        failure: &Failure,
    ) -> ModerationDecision {
        ModerationDecision {
            verdict: ModerationVerdict::Flag,
            reason: format!(
                "manual review (moderation policy unavailable: {})",
                failure.kind
            ),
            source,
        }
    }

    fn builtin(_: &ModerationRequest) -> ModerationDecision {
        ModerationDecision {
            verdict: ModerationVerdict::Accept,
            reason: String::new(),
            source: DecisionSource::builtin(),
        }
    }

    fn default_sample() -> serde_json::Value {
        serde_json::json!({
            "gpu_id": "gpu_sample", "gpu_model": "RTX 4090", "rating": 5, "comment": "fast and stable",
            "reviewer_has_completed_booking": true, "reviewer_reviews_today": 0,
            "gpu_average_rating": 4.5, "gpu_total_reviews": 10, "now_unix": 1_767_225_600
        })
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
}
