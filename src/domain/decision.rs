//! One policy decision as the decision log keeps it: which module decided what, from which input, at
//! what cost. Produced by the policy runtime, persisted by `store::decisions`, read by the admin API,
//! `policy replay` and `policy fixtures`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{DecisionId, Timestamp};

/// Who answered: the live module, a canary candidate serving its share of live traffic, or a shadow
/// candidate that sees the live inputs and whose answers are only logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionRole {
    Live,
    Canary,
    Shadow,
}

impl DecisionRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Canary => "canary",
            Self::Shadow => "shadow",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "live" => Some(Self::Live),
            "canary" => Some(Self::Canary),
            "shadow" => Some(Self::Shadow),
            _ => None,
        }
    }

    /// Live and canary decisions answered a request; shadow ones never did.
    pub fn served(self) -> bool {
        self != Self::Shadow
    }
}

/// What a decision comes down to, for comparing two modules: a price, or a verdict word
/// (`accept`, `flag`, `reject`; `keep`, `expire`, `extend:30`, `grace:15`).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Price(f64),
    Verdict(String),
}

/// One decision of one module.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionEntry {
    pub id: DecisionId,
    /// `pricing`, `booking-timeout` or `review-moderation`.
    pub slot: &'static str,
    pub role: DecisionRole,
    /// For a shadow decision: the served decision it shadows.
    pub live_id: Option<DecisionId>,
    /// `builtin`, or `<file>@<sha256 prefix>`.
    pub policy: String,
    /// None when the built-in rules answered.
    pub module_sha256: Option<String>,
    /// The market's input (JSON), everything the host knew: enough to replay the decision.
    pub input: String,
    /// The final answer (JSON), after guardrails or fallback.
    pub output: String,
    pub outcome: Outcome,
    pub fallback: bool,
    /// Why the fallback answered: the failure kind (`trap`, `out_of_fuel`...) and its message.
    pub failure_kind: Option<String>,
    pub failure: Option<String>,
    pub fuel: u64,
    pub duration_us: u64,
    /// The HTTP request that asked for it (`x-request-id`); None for the sweeper.
    pub request_id: Option<String>,
    pub gpu_id: Option<String>,
    pub decided_at: Timestamp,
}
