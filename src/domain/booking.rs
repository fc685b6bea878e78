//! A booking, which is also its order (the bill): one record, one lifecycle.

use super::{
    BookingDuration, BookingId, BookingStatus, DecisionId, GpuId, Money, OrderId, PrincipalId,
    Timestamp,
};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Booking {
    pub id: BookingId,
    pub order_id: OrderId,
    pub gpu_id: GpuId,
    pub gpu_model: String,
    pub miner_id: PrincipalId,
    pub client_id: PrincipalId,
    pub job_id: Option<String>,
    /// What the client booked; extensions move `end_at`, not this.
    #[sqlx(rename = "duration_seconds", try_from = "i64")]
    pub duration: BookingDuration,
    /// The price locked at booking, per hour.
    #[sqlx(rename = "price_micro")]
    pub price_per_hour: Money,
    #[sqlx(rename = "total_micro")]
    pub total: Money,
    /// Set when the booking ends.
    #[sqlx(rename = "refund_micro")]
    pub refund: Option<Money>,
    #[sqlx(rename = "charged_micro")]
    pub charged: Option<Money>,
    #[sqlx(try_from = "String")]
    pub status: BookingStatus,
    pub multiplier: f64,
    pub policy: String,
    #[sqlx(rename = "pricing_fallback", try_from = "i64")]
    pub priced_by: PricedBy,
    /// Extensions and grace periods granted so far.
    pub extensions: i64,
    pub grace_until: Option<Timestamp>,
    pub start_at: Timestamp,
    pub end_at: Timestamp,
    pub created_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub end_reason: Option<String>,
    /// The decision log entry of the quote this booking was priced by.
    pub pricing_decision: Option<DecisionId>,
    /// The booking-timeout decision that last acted on it (ended, extended or gave grace).
    pub timeout_decision: Option<DecisionId>,
}

/// Whether the booking's price came from the pricing policy or from its fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PricedBy {
    Policy,
    Fallback,
}

impl PricedBy {
    pub fn from_fallback(fallback: bool) -> Self {
        if fallback {
            Self::Fallback
        } else {
            Self::Policy
        }
    }

    /// The stored form: 1 for a fallback price (SQLite has no boolean; see docs/decisions/0001-storage.md).
    pub fn as_flag(self) -> i64 {
        i64::from(self == Self::Fallback)
    }
}

impl TryFrom<i64> for PricedBy {
    type Error = String;

    fn try_from(flag: i64) -> Result<Self, Self::Error> {
        match flag {
            0 => Ok(Self::Policy),
            1 => Ok(Self::Fallback),
            other => Err(format!("pricing_fallback must be 0 or 1, found {other}")),
        }
    }
}

impl TryFrom<i64> for BookingDuration {
    type Error = String;

    fn try_from(seconds: i64) -> Result<Self, Self::Error> {
        if seconds < 1 {
            return Err(format!(
                "duration_seconds must be positive, found {seconds}"
            ));
        }
        Ok(BookingDuration::from_seconds(seconds))
    }
}
