//! A GPU in the registry, as stored.

use super::{GpuId, GpuStatus, Money, PrincipalId, Timestamp};

/// A registered GPU. Decoded straight from its row; `model_key` is the normalised model name the
/// model filter matches against ([`crate::domain::ModelFilter`]).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Gpu {
    pub id: GpuId,
    pub miner_id: PrincipalId,
    pub model: String,
    pub model_key: String,
    pub memory_gb: f64,
    pub cuda_version: Option<String>,
    pub cuda_cores: Option<i64>,
    pub compute_capability: Option<String>,
    pub region: Option<String>,
    pub description: Option<String>,
    #[sqlx(try_from = "String")]
    pub capabilities: Capabilities,
    /// The miner's asking price per hour.
    #[sqlx(rename = "price_micro")]
    pub asking_price: Money,
    /// The pricing policy's latest quote for a one-hour booking.
    #[sqlx(rename = "current_price_micro")]
    pub current_price: Money,
    #[sqlx(try_from = "String")]
    pub status: GpuStatus,
    pub total_bookings: i64,
    pub rating_sum: i64,
    pub rating_count: i64,
    pub last_heartbeat: Option<Timestamp>,
    pub created_at: Timestamp,
}

impl Gpu {
    pub fn average_rating(&self) -> f64 {
        average_rating(self.rating_sum, self.rating_count)
    }
}

/// The mean of `count` ratings summing to `sum`; 0 when there are none.
pub fn average_rating(sum: i64, count: i64) -> f64 {
    if count == 0 {
        0.0
    } else {
        sum as f64 / count as f64
    }
}

/// What a GPU can run besides its model name; stored as a JSON array of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities(pub Vec<String>);

impl Capabilities {
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "[]".to_owned())
    }
}

impl TryFrom<String> for Capabilities {
    type Error = serde_json::Error;

    fn try_from(json: String) -> Result<Self, Self::Error> {
        serde_json::from_str(&json).map(Self)
    }
}
