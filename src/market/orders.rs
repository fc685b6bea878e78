//! Orders: the bill of each booking, listed per caller.

use serde::Serialize;
use utoipa::ToSchema;

use super::{Market, Principal};
use crate::config::Role;
use crate::domain::{
    Booking, BookingId, BookingStatus, DecisionId, GpuId, Money, OrderId, PrincipalId, Timestamp,
};
use crate::error::Result;
use crate::store::Page;
use crate::store::bookings::{self, OrderScope};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderView {
    pub order_id: OrderId,
    pub booking_id: BookingId,
    pub gpu_id: GpuId,
    pub gpu_model: String,
    pub miner_id: PrincipalId,
    pub client_id: PrincipalId,
    pub duration_hours: f64,
    pub price_per_hour: Money,
    pub total_cost: Money,
    /// Null while the order is active.
    pub refund: Option<Money>,
    pub charged: Option<Money>,
    pub status: BookingStatus,
    pub created_at: Timestamp,
    pub start_time: Timestamp,
    pub end_time: Timestamp,
    pub completed_at: Option<Timestamp>,
    pub end_reason: Option<String>,
    pub job_id: Option<String>,
    /// The decision log entry of the quote that priced it: "why was I charged this".
    pub pricing_decision: Option<DecisionId>,
    /// The booking-timeout decision that last acted on it (ended, extended or gave grace).
    pub timeout_decision: Option<DecisionId>,
}

impl From<Booking> for OrderView {
    fn from(b: Booking) -> Self {
        Self {
            order_id: b.order_id,
            booking_id: b.id,
            gpu_id: b.gpu_id,
            gpu_model: b.gpu_model,
            miner_id: b.miner_id,
            client_id: b.client_id,
            duration_hours: b.duration.hours(),
            price_per_hour: b.price_per_hour,
            total_cost: b.total,
            refund: b.refund,
            charged: b.charged,
            status: b.status,
            created_at: b.created_at,
            start_time: b.start_at,
            end_time: b.end_at,
            completed_at: b.ended_at,
            end_reason: b.end_reason,
            job_id: b.job_id,
            pricing_decision: b.pricing_decision,
            timeout_decision: b.timeout_decision,
        }
    }
}

/// Newest first. A client sees the orders it placed, a miner the orders on its GPUs, an admin all.
/// `status` is any case of a booking status; empty means all.
pub async fn list(
    market: &Market,
    caller: &Principal,
    status: Option<&str>,
    page: Page,
) -> Result<Vec<OrderView>> {
    let status = status
        .filter(|s| !s.is_empty())
        .map(str::parse::<BookingStatus>)
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
    let rows = bookings::orders(&market.store, &scope, status, page).await?;
    Ok(rows.into_iter().map(OrderView::from).collect())
}
