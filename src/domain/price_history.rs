//! Price history: per model and time bucket, the average asking price of its GPUs.

use super::Money;

/// One model's sample for one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSample {
    pub model_key: String,
    /// Unix seconds at the start of the bucket.
    pub bucket: i64,
    pub model: String,
    pub average_price: Money,
    pub gpu_count: i64,
}

/// One point of a (possibly multi-model) history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PricePoint {
    pub bucket: i64,
    pub average_price: Money,
}

/// The pricing guardrails' memory of one GPU. Policies never keep it: it comes in with each request
/// ([`PricingRequest::previous`](crate::policy::PricingRequest::previous)) and the next one goes out with the quote ([`PriceQuote::state`](crate::policy::PriceQuote::state)), so
/// any replica quotes the same, and the market stores it only when a quote is booked.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PriceState {
    /// The price at the start of the current refresh interval: the reference for the change limit.
    pub anchor_price: f64,
    pub anchor_unix: i64,
    pub last_price: f64,
    pub last_multiplier: f64,
}
