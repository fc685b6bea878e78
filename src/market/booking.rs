//! Booking a GPU and releasing it early.

use serde::Serialize;
use utoipa::ToSchema;

use super::quote::quote_with_counts;
use super::registry::find;
use super::rules::booking::settle;
use super::rules::pricing::booking_total;
use super::{Market, Principal};
use crate::config::Role;
use crate::domain::{
    Booking, BookingDuration, BookingId, BookingStatus, DecisionId, GpuId, GpuStatus, Money,
    OrderId, PricedBy, Timestamp,
};
use crate::error::{Error, Result};
use crate::store::bookings::{self, BookOutcome, Ending};
use crate::store::gpus;

const MAX_JOB_ID_CHARS: usize = 256;

/// A booking request after the API layer parsed it.
#[derive(Debug, Clone)]
pub struct BookRequest {
    pub duration_hours: f64,
    pub job_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BookingReceipt {
    pub booking_id: BookingId,
    pub order_id: OrderId,
    pub gpu_id: GpuId,
    pub status: &'static str,
    pub price_per_hour: Money,
    pub total_cost: Money,
    pub start_time: Timestamp,
    pub end_time: Timestamp,
    pub duration_hours: f64,
    pub job_id: Option<String>,
    pub pricing: BookingPricing,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BookingPricing {
    pub multiplier: f64,
    pub policy: String,
    pub fallback: bool,
    pub explanation: String,
    /// The decision log entry behind this price (`GET /v1/admin/decisions/{id}`); absent when
    /// decisions are not logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<DecisionId>,
}

fn not_bookable(gpu_id: &GpuId, status: GpuStatus) -> Error {
    Error::conflict(format!("GPU {gpu_id} is {status} and cannot be booked"))
}

pub async fn book(
    market: &Market,
    caller: &Principal,
    gpu_id: &GpuId,
    request: BookRequest,
) -> Result<BookingReceipt> {
    caller.require(Role::Client, "booking a GPU")?;
    let duration = BookingDuration::from_hours(request.duration_hours)?;
    if matches!(&request.job_id, Some(job) if job.chars().count() > MAX_JOB_ID_CHARS) {
        return Err(Error::bad_request(format!(
            "job_id must be at most {MAX_JOB_ID_CHARS} characters"
        )));
    }
    let (gpu, counts, previous) = gpus::get_for_booking(&market.store, gpu_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("GPU {gpu_id} not found")))?;
    if gpu.status != GpuStatus::Available {
        return Err(not_bookable(gpu_id, gpu.status));
    }
    let quote = quote_with_counts(
        market,
        &gpu,
        counts,
        duration.hours(),
        Timestamp::now(),
        previous,
    )
    .await?;
    let total = booking_total(quote.price, duration);
    // Taken after the quote, right before the claim, so the client is not billed for the quoting.
    let now = Timestamp::now();
    let booking = Booking {
        id: BookingId::generate(),
        order_id: OrderId::generate(),
        gpu_id: gpu.id.clone(),
        gpu_model: gpu.model.clone(),
        miner_id: gpu.miner_id.clone(),
        client_id: caller.id.clone(),
        job_id: request.job_id.filter(|j| !j.is_empty()),
        duration,
        price_per_hour: quote.price,
        total,
        refund: None,
        charged: None,
        status: BookingStatus::Active,
        multiplier: quote.multiplier,
        policy: quote.source.policy.clone(),
        priced_by: PricedBy::from_fallback(quote.source.fallback),
        extensions: 0,
        grace_until: None,
        start_at: now,
        end_at: now.plus_seconds(duration.seconds()),
        created_at: now,
        ended_at: None,
        end_reason: None,
        pricing_decision: quote.source.decision_id.clone(),
        timeout_decision: None,
    };
    // The guardrails remember booked prices only, in the database so every replica sees them.
    match bookings::create(&market.store, &booking, quote.state.as_ref()).await? {
        BookOutcome::Booked => {}
        BookOutcome::GpuMissing => return Err(Error::not_found(format!("GPU {gpu_id} not found"))),
        BookOutcome::GpuNotAvailable(status) => return Err(not_bookable(gpu_id, status)),
    }
    market.metrics.bookings_created.inc();
    if quote.source.fallback {
        market.metrics.pricing_fallbacks.inc();
    }
    market.model_changed(&gpu.model_key);
    tracing::info!(booking_id = %booking.id, %gpu_id, client_id = %caller.id, total = %total, "GPU booked");
    Ok(BookingReceipt {
        booking_id: booking.id,
        order_id: booking.order_id,
        gpu_id: booking.gpu_id,
        status: "booked",
        price_per_hour: quote.price,
        total_cost: total,
        start_time: booking.start_at,
        end_time: booking.end_at,
        duration_hours: duration.hours(),
        job_id: booking.job_id,
        pricing: BookingPricing {
            multiplier: quote.multiplier,
            policy: quote.source.policy,
            fallback: quote.source.fallback,
            explanation: quote.explanation,
            decision_id: quote.source.decision_id,
        },
    })
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Released {
    pub status: &'static str,
    pub gpu_id: GpuId,
    pub booking_id: BookingId,
    pub order_id: OrderId,
    pub order_status: BookingStatus,
    pub refund: Money,
    pub charged: Money,
    pub message: String,
}

/// The client ends its own booking (completed); the miner or an admin cancels it.
fn release_by(caller: &Principal, booking: &Booking) -> Result<(BookingStatus, &'static str)> {
    if caller.id == booking.client_id {
        Ok((BookingStatus::Completed, "released by the client"))
    } else if caller.is_admin() {
        Ok((BookingStatus::Cancelled, "cancelled by an admin"))
    } else if caller.has(Role::Miner) && caller.id == booking.miner_id {
        Ok((BookingStatus::Cancelled, "cancelled by the miner"))
    } else {
        Err(Error::forbidden(
            "only the booking's client, the GPU's miner or an admin can release it",
        ))
    }
}

pub async fn release(market: &Market, caller: &Principal, gpu_id: &GpuId) -> Result<Released> {
    // The booking row carries the GPU's miner and model, so the GPU itself is only read to tell an
    // unknown GPU (404) from an unbooked one (400).
    let Some(booking) = bookings::active_for_gpu(&market.store, gpu_id).await? else {
        find(market, gpu_id).await?;
        return Err(Error::bad_request(format!("GPU {gpu_id} is not booked")));
    };
    let (order_status, reason) = release_by(caller, &booking)?;
    let now = Timestamp::now();
    let settlement = settle(booking.total, booking.start_at, booking.end_at, now);
    let ending = Ending {
        booking_id: &booking.id,
        status: order_status,
        ended_at: now,
        refund: settlement.refund,
        charged: settlement.charged,
        reason,
        heartbeat_cutoff: market.heartbeat_cutoff(now),
        expected_end_at: booking.end_at,
        decision: None,
    };
    if !bookings::end(&market.store, &ending).await? {
        return Err(Error::conflict(format!(
            "booking {} ended or changed meanwhile; try again",
            booking.id
        )));
    }
    market.metrics.bookings_ended(order_status.as_str());
    market.model_changed(&crate::domain::model_key(&booking.gpu_model));
    let (charged, refund) = (settlement.charged, settlement.refund);
    tracing::info!(booking_id = %booking.id, %gpu_id, by = %caller.id, %charged, %refund, "booking released");
    Ok(Released {
        status: "released",
        gpu_id: gpu_id.clone(),
        booking_id: booking.id,
        order_id: booking.order_id,
        order_status,
        refund,
        charged,
        message: format!("GPU {gpu_id} released: charged {charged}, refunded {refund}"),
    })
}
