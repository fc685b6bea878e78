//! The three decision points operators can replace: pricing, booking timeout and review moderation.
//!
//! The market layer only ever talks to [`Policies`]; whether a decision comes from the built-in rules
//! ([`BuiltinPolicies`]) or from a sandboxed WebAssembly module is invisible to it. Every input a policy
//! needs is passed in (time included) so decisions are deterministic and replayable; nothing here reads a
//! clock, a file or the network.

mod builtin;
pub mod defaults;
pub mod wasm;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::DecisionId;

pub use crate::domain::PriceState;
pub use builtin::BuiltinPolicies;

/// The facts a pricing policy sees about one GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuFacts {
    pub gpu_id: String,
    pub model: String,
    pub memory_gb: f64,
    pub region: Option<String>,
    /// The miner's asking price, AITBC per hour.
    pub base_price: f64,
}

/// Market state for the GPU's model at the time of the quote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketFacts {
    pub total_gpus: u32,
    pub available_gpus: u32,
    pub booked_gpus: u32,
    /// booked / (available + booked), 0 when there is no capacity.
    pub utilization: f64,
    /// Bookings of this model that started in the last hour.
    pub bookings_last_hour: u32,
    /// Recent average asking prices for the model, oldest first, AITBC per hour.
    pub recent_prices: Vec<f64>,
}

/// What the client asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestFacts {
    pub duration_hours: f64,
    pub start_unix: i64,
}

/// Wall-clock facts, passed in so that policies never read a clock themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeFacts {
    pub now_unix: i64,
    /// 0-23, UTC.
    pub hour_of_day: u8,
    /// 0 = Monday .. 6 = Sunday, UTC.
    pub weekday: u8,
}

impl TimeFacts {
    pub fn at(now: chrono::DateTime<chrono::Utc>) -> Self {
        use chrono::{Datelike, Timelike};
        Self {
            now_unix: now.timestamp(),
            hour_of_day: now.hour() as u8,
            weekday: now.weekday().num_days_from_monday() as u8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PricingRequest {
    pub gpu: GpuFacts,
    pub market: MarketFacts,
    pub request: RequestFacts,
    pub time: TimeFacts,
    /// What the host remembers of the GPU's last booked quote (the market keeps it in the database),
    /// for the module's smoothing and the change guardrail; None for a GPU never booked.
    pub previous: Option<PriceState>,
}

/// Which policy produced a decision, and whether it was the slot's fallback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionSource {
    /// `builtin`, or `<file>@<sha256 prefix>` for a WebAssembly module.
    pub policy: String,
    /// True when the configured policy failed and the slot's fallback answered instead.
    pub fallback: bool,
    /// The decision log's entry for this decision (`GET /v1/admin/decisions/{id}`); None where no
    /// log is kept (the built-in policies, simulations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<DecisionId>,
}

impl DecisionSource {
    pub fn builtin() -> Self {
        Self::new("builtin", false)
    }

    pub fn new(policy: impl Into<String>, fallback: bool) -> Self {
        Self {
            policy: policy.into(),
            fallback,
            decision_id: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriceQuote {
    /// AITBC per hour, already within the host's guardrails.
    pub price_per_hour: f64,
    pub multiplier: f64,
    pub explanation: String,
    pub source: DecisionSource,
    /// What to remember for the GPU if this quote is booked; None (built-in rules, fallback): keep
    /// what is remembered.
    pub state: Option<PriceState>,
}

/// Facts about one active booking, for the booking-timeout policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeoutRequest {
    pub booking_id: String,
    pub gpu_id: String,
    pub start_unix: i64,
    pub end_unix: i64,
    pub now_unix: i64,
    /// None when the GPU never sent a heartbeat.
    pub last_heartbeat_unix: Option<i64>,
    pub job_id: Option<String>,
    /// Extensions and grace periods granted so far.
    pub extensions: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "minutes")]
pub enum TimeoutAction {
    /// Leave the booking as it is.
    Keep,
    /// End the booking now: it completes if its time is up, otherwise it expires early.
    Expire,
    /// Lengthen the booking (billed at the locked price).
    Extend(u32),
    /// Let the booking run past its end without charge.
    Grace(u32),
}

impl TimeoutAction {
    /// `keep`, `expire`, `extend:30`, `grace:15`: the decision log's verdict.
    pub fn word(self) -> String {
        match self {
            Self::Keep => "keep".to_owned(),
            Self::Expire => "expire".to_owned(),
            Self::Extend(minutes) => format!("extend:{minutes}"),
            Self::Grace(minutes) => format!("grace:{minutes}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeoutDecision {
    pub action: TimeoutAction,
    pub reason: String,
    pub source: DecisionSource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModerationRequest {
    pub gpu_id: String,
    pub gpu_model: String,
    pub rating: u8,
    pub comment: Option<String>,
    /// The reviewer has a booking on this GPU that ran (completed or released).
    pub reviewer_has_completed_booking: bool,
    /// Reviews the reviewer wrote in the last 24 hours, on any GPU.
    pub reviewer_reviews_today: u32,
    pub gpu_average_rating: f64,
    pub gpu_total_reviews: u32,
    pub now_unix: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModerationVerdict {
    Accept,
    Reject,
    Flag,
}

impl ModerationVerdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::Reject => "reject",
            Self::Flag => "flag",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModerationDecision {
    pub verdict: ModerationVerdict,
    /// Empty for a plain accept.
    pub reason: String,
    pub source: DecisionSource,
}

/// The decisions the market delegates. Implementations must never fail: when the configured policy
/// cannot answer, they answer with the slot's fallback and say so in [`DecisionSource::fallback`].
#[async_trait]
pub trait Policies: Send + Sync + 'static {
    async fn quote(&self, request: PricingRequest) -> PriceQuote;

    /// Quotes many GPUs at once, in order; used to refresh the catalogue's current prices.
    async fn quote_batch(&self, requests: Vec<PricingRequest>) -> Vec<PriceQuote>;

    async fn booking_timeout(&self, request: TimeoutRequest) -> TimeoutDecision;

    async fn moderate(&self, request: ModerationRequest) -> ModerationDecision;
}
