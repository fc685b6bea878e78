//! Booking a GPU and releasing it early.

use serde::Serialize;
use utoipa::ToSchema;

use super::model_match::model_key;
use super::pricing::quote_with_counts;
use super::registry::find;
use super::time::{MICROS_PER_SECOND, now_micros, rfc3339};
use super::{Market, Money, Principal, ids};
use crate::config::Role;
use crate::error::{Error, Result};
use crate::store::bookings::{self, BookOutcome, BookingRow, Ending};
use crate::store::gpus;

pub const MAX_DURATION_HOURS: f64 = 8_760.0;
const MAX_JOB_ID_CHARS: usize = 256;

/// A booking request after the API layer parsed it.
#[derive(Debug, Clone)]
pub struct BookRequest {
    pub duration_hours: f64,
    pub job_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BookingReceipt {
    pub booking_id: String,
    pub order_id: String,
    pub gpu_id: String,
    pub status: &'static str,
    #[schema(value_type = f64)]
    pub price_per_hour: Money,
    #[schema(value_type = f64)]
    pub total_cost: Money,
    pub start_time: String,
    pub end_time: String,
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
}

/// Whole seconds of a booking of `hours`, or why it cannot be booked.
pub fn duration_seconds(hours: f64) -> Result<i64> {
    if !hours.is_finite() || hours <= 0.0 || hours > MAX_DURATION_HOURS {
        return Err(Error::bad_request(format!(
            "duration_hours must be greater than 0 and at most {MAX_DURATION_HOURS}"
        )));
    }
    let seconds = (hours * 3600.0).round() as i64;
    if seconds < 1 {
        return Err(Error::bad_request(
            "duration_hours must be at least one second (0.0003 hours)",
        ));
    }
    Ok(seconds)
}

pub async fn book(
    market: &Market,
    caller: &Principal,
    gpu_id: &str,
    request: BookRequest,
) -> Result<BookingReceipt> {
    if !caller.has(Role::Client) && !caller.is_admin() {
        return Err(Error::forbidden("booking a GPU needs the client role"));
    }
    let seconds = duration_seconds(request.duration_hours)?;
    if matches!(&request.job_id, Some(job) if job.chars().count() > MAX_JOB_ID_CHARS) {
        return Err(Error::bad_request(format!(
            "job_id must be at most {MAX_JOB_ID_CHARS} characters"
        )));
    }
    let now = now_micros();
    let (gpu, counts) = gpus::get_with_model_counts(&market.store, gpu_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("GPU {gpu_id} not found")))?;
    if gpu.status != "available" {
        return Err(Error::conflict(format!(
            "GPU {gpu_id} is {} and cannot be booked",
            gpu.status
        )));
    }
    let quote = quote_with_counts(market, &gpu, counts, request.duration_hours, now).await?;
    let total = quote.price.pro_rata(seconds, 3600);
    // Taken after the quote, right before the claim, so the client is not billed for the quoting.
    let now = now_micros();
    let booking = BookingRow {
        id: ids::new_id("bk"),
        order_id: ids::new_id("ord"),
        gpu_id: gpu.id.clone(),
        gpu_model: gpu.model.clone(),
        miner_id: gpu.miner_id.clone(),
        client_id: caller.id.clone(),
        job_id: request.job_id.filter(|j| !j.is_empty()),
        duration_hours: request.duration_hours,
        duration_seconds: seconds,
        price_micro: quote.price.micros(),
        total_micro: total.micros(),
        refund_micro: None,
        charged_micro: None,
        status: "active".to_owned(),
        multiplier: quote.multiplier,
        policy: quote.source.policy.clone(),
        pricing_fallback: i64::from(quote.source.fallback),
        extensions: 0,
        grace_until: None,
        start_at: now,
        end_at: now + seconds * MICROS_PER_SECOND,
        created_at: now,
        ended_at: None,
        end_reason: None,
    };
    match bookings::create(&market.store, &booking).await? {
        BookOutcome::Booked => {}
        BookOutcome::GpuMissing => return Err(Error::not_found(format!("GPU {gpu_id} not found"))),
        BookOutcome::GpuNotAvailable(status) => {
            return Err(Error::conflict(format!(
                "GPU {gpu_id} is {status} and cannot be booked"
            )));
        }
    }
    market.metrics.bookings_created.inc();
    if quote.source.fallback {
        market.metrics.pricing_fallbacks.inc();
    }
    market.prices.mark_dirty(&gpu.model_key);
    tracing::info!(booking_id = %booking.id, gpu_id, client_id = %caller.id, total = %total, "GPU booked");
    Ok(BookingReceipt {
        booking_id: booking.id,
        order_id: booking.order_id,
        gpu_id: booking.gpu_id,
        status: "booked",
        price_per_hour: quote.price,
        total_cost: total,
        start_time: rfc3339(booking.start_at),
        end_time: rfc3339(booking.end_at),
        duration_hours: booking.duration_hours,
        job_id: booking.job_id,
        pricing: BookingPricing {
            multiplier: quote.multiplier,
            policy: quote.source.policy,
            fallback: quote.source.fallback,
            explanation: quote.explanation,
        },
    })
}

/// What a booking costs if it ends at `at`: the used share of its booked time, to the second.
pub fn settle(booking: &BookingRow, at: i64) -> (Money, Money) {
    let total = Money::from_micros(booking.total_micro);
    let booked_seconds = ((booking.end_at - booking.start_at) / MICROS_PER_SECOND).max(1);
    let used_seconds = ((at - booking.start_at) / MICROS_PER_SECOND).clamp(0, booked_seconds);
    let charged = total.pro_rata(used_seconds, booked_seconds);
    (charged, total.saturating_sub(charged))
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Released {
    pub status: &'static str,
    pub gpu_id: String,
    pub booking_id: String,
    pub order_id: String,
    pub order_status: &'static str,
    #[schema(value_type = f64)]
    pub refund: Money,
    #[schema(value_type = f64)]
    pub charged: Money,
    pub message: String,
}

pub async fn release(market: &Market, caller: &Principal, gpu_id: &str) -> Result<Released> {
    // The booking row carries the GPU's miner and model, so the GPU itself is only read to tell an
    // unknown GPU (404) from an unbooked one (400).
    let Some(booking) = bookings::active_for_gpu(&market.store, gpu_id).await? else {
        find(market, gpu_id).await?;
        return Err(Error::bad_request(format!("GPU {gpu_id} is not booked")));
    };
    // The client ends its own booking (completed); the miner or an admin cancels it.
    let (order_status, reason) = if caller.id == booking.client_id {
        ("completed", "released by the client")
    } else if caller.is_admin() {
        ("cancelled", "cancelled by an admin")
    } else if caller.has(Role::Miner) && caller.id == booking.miner_id {
        ("cancelled", "cancelled by the miner")
    } else {
        return Err(Error::forbidden(
            "only the booking's client, the GPU's miner or an admin can release it",
        ));
    };
    let now = now_micros();
    let (charged, refund) = settle(&booking, now);
    let ending = Ending {
        booking_id: &booking.id,
        status: order_status,
        ended_at: now,
        refund_micro: refund.micros(),
        charged_micro: charged.micros(),
        reason,
        heartbeat_cutoff: market.heartbeat_cutoff(now),
        expected_end_at: booking.end_at,
    };
    if !bookings::end(&market.store, &ending).await? {
        return Err(Error::conflict(format!(
            "booking {} ended or changed meanwhile; try again",
            booking.id
        )));
    }
    market.metrics.bookings_ended(order_status);
    market.prices.mark_dirty(&model_key(&booking.gpu_model));
    tracing::info!(booking_id = %booking.id, gpu_id, by = %caller.id, %charged, %refund, "booking released");
    Ok(Released {
        status: "released",
        gpu_id: gpu_id.to_owned(),
        booking_id: booking.id,
        order_id: booking.order_id,
        order_status,
        refund,
        charged,
        message: format!("GPU {gpu_id} released: charged {charged}, refunded {refund}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn booking(total_micro: i64, seconds: i64) -> BookingRow {
        BookingRow {
            id: "bk".into(),
            order_id: "ord".into(),
            gpu_id: "gpu".into(),
            gpu_model: "m".into(),
            miner_id: "miner".into(),
            client_id: "client".into(),
            job_id: None,
            duration_hours: seconds as f64 / 3600.0,
            duration_seconds: seconds,
            price_micro: 0,
            total_micro,
            refund_micro: None,
            charged_micro: None,
            status: "active".into(),
            multiplier: 1.0,
            policy: "builtin".into(),
            pricing_fallback: 0,
            extensions: 0,
            grace_until: None,
            start_at: 0,
            end_at: seconds * MICROS_PER_SECOND,
            created_at: 0,
            ended_at: None,
            end_reason: None,
        }
    }

    #[test]
    fn settlement_is_pro_rata_to_the_second_and_exact() {
        // 0.333333/h for 1.5 h = 0.4999995 → 0.500000 (rounded once, at booking).
        let b = booking(
            Money::from_units(0.333333)
                .unwrap()
                .pro_rata(5400, 3600)
                .micros(),
            5400,
        );
        assert_eq!(b.total_micro, 500_000);
        let (charged, refund) = settle(&b, 1800 * MICROS_PER_SECOND + 999_999);
        assert_eq!(charged.micros(), 166_667);
        assert_eq!(refund.micros(), 333_333);
        assert_eq!(charged.micros() + refund.micros(), b.total_micro);
    }

    #[test]
    fn settlement_never_charges_more_than_the_total_or_less_than_zero() {
        let b = booking(1_000_000, 3600);
        assert_eq!(settle(&b, -5).0, Money::ZERO);
        assert_eq!(settle(&b, 10_000 * MICROS_PER_SECOND).0.micros(), 1_000_000);
    }

    #[test]
    fn durations_are_bounded() {
        assert!(duration_seconds(0.0).is_err());
        assert!(duration_seconds(-1.0).is_err());
        assert!(duration_seconds(f64::NAN).is_err());
        assert!(duration_seconds(8760.5).is_err());
        assert_eq!(duration_seconds(8760.0).unwrap(), 8760 * 3600);
        assert_eq!(duration_seconds(0.001).unwrap(), 4);
    }
}
