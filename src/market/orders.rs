//! Orders: the bill of each booking, listed per caller.

use serde::Serialize;
use utoipa::ToSchema;

use super::time::{rfc3339, rfc3339_opt};
use super::{Market, Money, Principal};
use crate::config::Role;
use crate::error::{Error, Result};
use crate::store::bookings::{self, BookingRow, OrderScope};

pub const ORDER_STATUSES: [&str; 4] = ["active", "completed", "cancelled", "expired"];

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderView {
    pub order_id: String,
    pub booking_id: String,
    pub gpu_id: String,
    pub gpu_model: String,
    pub miner_id: String,
    pub client_id: String,
    pub duration_hours: f64,
    #[schema(value_type = f64)]
    pub price_per_hour: Money,
    #[schema(value_type = f64)]
    pub total_cost: Money,
    /// Null while the order is active.
    #[schema(value_type = Option<f64>)]
    pub refund: Option<Money>,
    #[schema(value_type = Option<f64>)]
    pub charged: Option<Money>,
    pub status: String,
    pub created_at: String,
    pub start_time: String,
    pub end_time: String,
    pub completed_at: Option<String>,
    pub end_reason: Option<String>,
    pub job_id: Option<String>,
}

impl From<BookingRow> for OrderView {
    fn from(b: BookingRow) -> Self {
        Self {
            order_id: b.order_id,
            booking_id: b.id,
            gpu_id: b.gpu_id,
            gpu_model: b.gpu_model,
            miner_id: b.miner_id,
            client_id: b.client_id,
            duration_hours: b.duration_hours,
            price_per_hour: Money::from_micros(b.price_micro),
            total_cost: Money::from_micros(b.total_micro),
            refund: b.refund_micro.map(Money::from_micros),
            charged: b.charged_micro.map(Money::from_micros),
            status: b.status,
            created_at: rfc3339(b.created_at),
            start_time: rfc3339(b.start_at),
            end_time: rfc3339(b.end_at),
            completed_at: rfc3339_opt(b.ended_at),
            end_reason: b.end_reason,
            job_id: b.job_id,
        }
    }
}

pub fn parse_status(status: &str) -> Result<&'static str> {
    ORDER_STATUSES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(status))
        .copied()
        .ok_or_else(|| {
            Error::bad_request(format!(
                "status must be one of {}",
                ORDER_STATUSES.join(", ")
            ))
        })
}

/// Newest first. A client sees the orders it placed, a miner the orders on its GPUs, an admin all.
pub async fn list(
    market: &Market,
    caller: &Principal,
    status: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<OrderView>> {
    let status = status
        .filter(|s| !s.is_empty())
        .map(parse_status)
        .transpose()?;
    let scope = if caller.is_admin() {
        OrderScope::All
    } else {
        OrderScope::Principal {
            id: caller.id.clone(),
            as_client: caller.has(Role::Client),
            as_miner: caller.has(Role::Miner),
        }
    };
    let rows = bookings::orders(&market.store, &scope, status, limit, offset).await?;
    Ok(rows.into_iter().map(OrderView::from).collect())
}
