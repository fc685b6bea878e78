//! Background upkeep: ends bookings whose time is up (through the booking-timeout policy) and turns
//! silent GPUs offline. Every step is a conditional update, so running it on several replicas at once,
//! or again after a restart, applies each decision exactly once. What to do with a booking is decided
//! by [`rules::sweep`](super::rules::sweep).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Market;
use super::rules::sweep::{SweepOutcome, in_grace, sweep_outcome, timeout_request};
use crate::domain::{BookingStatus, Timestamp, model_key};
use crate::error::Result;
use crate::policy::wasm::{MAX_GUEST_TEXT, guest_text};
use crate::store::bookings::{self, ActiveBooking, Ending};
use crate::store::gpus;

/// Most active bookings looked at per tick; the rest wait for the next one.
const SWEEP_BATCH: i64 = 1_000;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub completed: u32,
    pub expired: u32,
    pub extended: u32,
}

/// Runs `step` every `interval` until `shutdown`.
async fn every<F, Fut>(interval: Duration, shutdown: CancellationToken, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => step().await,
        }
    }
}

pub async fn run_booking_sweeper(market: Market, shutdown: CancellationToken) {
    let interval = Duration::from_millis(market.config.booking.sweep_interval_ms);
    every(interval, shutdown, || async {
        if let Err(err) = sweep_bookings(&market).await {
            tracing::warn!(error = %err, "booking sweep failed");
        }
    })
    .await;
}

pub async fn run_heartbeat_monitor(market: Market, shutdown: CancellationToken) {
    let interval = Duration::from_millis(market.config.heartbeat.check_interval_ms);
    every(interval, shutdown, || async {
        let cutoff = market.heartbeat_cutoff(Timestamp::now());
        match gpus::mark_silent_offline(&market.store, cutoff).await {
            Ok(0) => {}
            Ok(n) => {
                market.catalogue_changed();
                tracing::info!(gpus = n, "GPUs without heartbeat marked offline");
            }
            Err(err) => tracing::warn!(error = %err, "heartbeat check failed"),
        }
    })
    .await;
}

pub async fn sweep_bookings(market: &Market) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    for active in bookings::active(&market.store, SWEEP_BATCH).await? {
        let now = Timestamp::now();
        if in_grace(&active.booking, now) {
            continue;
        }
        decide(market, active, now, &mut report).await?;
    }
    Ok(report)
}

async fn decide(
    market: &Market,
    active: ActiveBooking,
    now: Timestamp,
    report: &mut SweepReport,
) -> Result<()> {
    let booking = &active.booking;
    let decision = market
        .policies
        .booking_timeout(timeout_request(booking, active.last_heartbeat, now))
        .await;
    if decision.source.fallback {
        market.metrics.timeout_fallbacks.inc();
    }
    match sweep_outcome(
        booking,
        &decision,
        now,
        market.config.booking.max_extensions,
    ) {
        SweepOutcome::Keep => {}
        SweepOutcome::End {
            status,
            reason,
            settlement,
        } => {
            let ending = Ending {
                booking_id: &booking.id,
                status,
                ended_at: now,
                refund: settlement.refund,
                charged: settlement.charged,
                reason: &reason,
                heartbeat_cutoff: market.heartbeat_cutoff(now),
                expected_end_at: booking.end_at,
                decision: decision.source.decision_id.as_ref(),
            };
            if bookings::end(&market.store, &ending).await? {
                market.metrics.bookings_ended(status.as_str());
                market.model_changed(&model_key(&booking.gpu_model));
                if status == BookingStatus::Completed {
                    report.completed += 1;
                } else {
                    report.expired += 1;
                }
                tracing::info!(booking_id = %booking.id, %status, reason = %guest_text(&reason, MAX_GUEST_TEXT), policy = %decision.source.policy, "booking ended");
            }
        }
        SweepOutcome::Extend {
            minutes,
            new_end,
            new_total,
        } => {
            let decided_by = decision.source.decision_id.as_ref();
            if bookings::reschedule(&market.store, booking, new_end, new_total, None, decided_by)
                .await?
            {
                market.catalogue_changed();
                report.extended += 1;
                tracing::info!(booking_id = %booking.id, minutes, reason = %guest_text(&decision.reason, MAX_GUEST_TEXT), "booking extended");
            }
        }
        SweepOutcome::Grace { minutes, until } => {
            if bookings::reschedule(
                &market.store,
                booking,
                booking.end_at,
                booking.total,
                Some(until),
                decision.source.decision_id.as_ref(),
            )
            .await?
            {
                market.catalogue_changed();
                report.extended += 1;
                tracing::info!(booking_id = %booking.id, minutes, reason = %guest_text(&decision.reason, MAX_GUEST_TEXT), "booking given grace");
            }
        }
    }
    Ok(())
}
