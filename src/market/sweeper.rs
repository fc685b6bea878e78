//! Background upkeep: ends bookings whose time is up (through the booking-timeout policy) and turns
//! silent GPUs offline. Every step is a conditional update, so running it on several replicas at once,
//! or again after a restart, applies each decision exactly once.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::booking::settle;
use super::time::{MICROS_PER_SECOND, now_micros, unix_seconds};
use super::{Market, Money};
use crate::error::Result;
use crate::policy::{TimeoutAction, TimeoutRequest};
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

pub async fn run_booking_sweeper(market: Market, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(
        market.config.booking.sweep_interval_ms,
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {
                if let Err(err) = sweep_bookings(&market).await {
                    tracing::warn!(error = %err, "booking sweep failed");
                }
            }
        }
    }
}

pub async fn run_heartbeat_monitor(market: Market, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(
        market.config.heartbeat.check_interval_ms,
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {
                match gpus::mark_silent_offline(&market.store, market.heartbeat_cutoff(now_micros())).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(gpus = n, "GPUs without heartbeat marked offline"),
                    Err(err) => tracing::warn!(error = %err, "heartbeat check failed"),
                }
            }
        }
    }
}

pub async fn sweep_bookings(market: &Market) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    for active in bookings::active(&market.store, SWEEP_BATCH).await? {
        let now = now_micros();
        if active.booking.grace_until.is_some_and(|until| until > now) {
            continue;
        }
        decide(market, active, now, &mut report).await?;
    }
    Ok(report)
}

async fn decide(
    market: &Market,
    active: ActiveBooking,
    now: i64,
    report: &mut SweepReport,
) -> Result<()> {
    let booking = &active.booking;
    // The policy sees whole seconds with the end rounded up, and the host judges "over" on the same
    // scale, so a policy that extends "at the end" always gets to see its end reached.
    let end_unix = booking.end_at.div_euclid(MICROS_PER_SECOND)
        + i64::from(booking.end_at % MICROS_PER_SECOND != 0);
    let now_unix = unix_seconds(now);
    let decision = market
        .policies
        .booking_timeout(TimeoutRequest {
            booking_id: booking.id.clone(),
            gpu_id: booking.gpu_id.clone(),
            start_unix: unix_seconds(booking.start_at),
            end_unix,
            now_unix,
            last_heartbeat_unix: active.last_heartbeat.map(unix_seconds),
            job_id: booking.job_id.clone(),
            extensions: u32::try_from(booking.extensions).unwrap_or(u32::MAX),
        })
        .await;
    if decision.source.fallback {
        market.metrics.timeout_fallbacks.inc();
    }
    let over = now_unix >= end_unix;
    let within_budget = booking.extensions < i64::from(market.config.booking.max_extensions);
    // The host, not the policy, guarantees that nothing stays active past its end without a decision
    // to extend it, and that extensions stay within the configured budget.
    let action = match decision.action {
        TimeoutAction::Keep if over => TimeoutAction::Expire,
        TimeoutAction::Extend(_) | TimeoutAction::Grace(_) if !within_budget => {
            TimeoutAction::Expire
        }
        TimeoutAction::Extend(0) | TimeoutAction::Grace(0) if over => TimeoutAction::Expire,
        action => action,
    };
    match action {
        TimeoutAction::Keep => {}
        TimeoutAction::Expire => {
            let (status, reason) = if over {
                ("completed", "booked time is over".to_owned())
            } else {
                ("expired", decision.reason.clone())
            };
            let (charged, refund) = settle(booking, now);
            let ending = Ending {
                booking_id: &booking.id,
                status,
                ended_at: now,
                refund_micro: refund.micros(),
                charged_micro: charged.micros(),
                reason: &reason,
                heartbeat_cutoff: market.heartbeat_cutoff(now),
                expected_end_at: booking.end_at,
            };
            if bookings::end(&market.store, &ending).await? {
                market.metrics.bookings_ended(status);
                market
                    .prices
                    .mark_dirty(&crate::market::model_match::model_key(&booking.gpu_model));
                if status == "completed" {
                    report.completed += 1;
                } else {
                    report.expired += 1;
                }
                tracing::info!(booking_id = %booking.id, status, reason = %reason, policy = %decision.source.policy, "booking ended");
            }
        }
        TimeoutAction::Extend(minutes) => {
            let added_seconds = i64::from(minutes) * 60;
            let added = Money::from_micros(booking.price_micro).pro_rata(added_seconds, 3600);
            let new_end = booking.end_at + added_seconds * MICROS_PER_SECOND;
            let new_total = booking.total_micro + added.micros();
            if bookings::reschedule(&market.store, booking, new_end, new_total, None).await? {
                report.extended += 1;
                tracing::info!(booking_id = %booking.id, minutes, reason = %decision.reason, "booking extended");
            }
        }
        TimeoutAction::Grace(minutes) => {
            let until = now + i64::from(minutes) * 60 * MICROS_PER_SECOND;
            if bookings::reschedule(
                &market.store,
                booking,
                booking.end_at,
                booking.total_micro,
                Some(until),
            )
            .await?
            {
                report.extended += 1;
                tracing::info!(booking_id = %booking.id, minutes, reason = %decision.reason, "booking given grace");
            }
        }
    }
    Ok(())
}
