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
