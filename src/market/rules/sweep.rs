//! What the sweeper does with an active booking, given the booking-timeout policy's decision. The host,
//! not the policy, guarantees that nothing stays active past its end without a decision to extend it,
//! and that extensions stay within the configured budget.

use super::booking::{Settlement, extension_cost, settle};
use crate::domain::{Booking, BookingStatus, Money, Timestamp};
use crate::policy::{TimeoutAction, TimeoutDecision, TimeoutRequest};

/// Whether the booking is in a grace period the sweeper must leave alone.
pub fn in_grace(booking: &Booking, now: Timestamp) -> bool {
    booking.grace_until.is_some_and(|until| until > now)
}

/// The policy's view of an active booking. It sees whole seconds with the end rounded up, and the
/// host judges "over" on the same scale, so a policy that extends "at the end" always sees its end.
pub fn timeout_request(
    booking: &Booking,
    last_heartbeat: Option<Timestamp>,
    now: Timestamp,
) -> TimeoutRequest {
    TimeoutRequest {
        booking_id: booking.id.to_string(),
        gpu_id: booking.gpu_id.to_string(),
        start_unix: booking.start_at.unix_seconds(),
        end_unix: booking.end_at.unix_seconds_ceil(),
        now_unix: now.unix_seconds(),
        last_heartbeat_unix: last_heartbeat.map(Timestamp::unix_seconds),
        job_id: booking.job_id.clone(),
        extensions: u32::try_from(booking.extensions.max(0)).unwrap_or(u32::MAX),
    }
}

/// What to apply to the booking.
#[derive(Debug, Clone, PartialEq)]
pub enum SweepOutcome {
    Keep,
    /// End the booking now: `Completed` when its time is over, `Expired` when ended early.
    End {
        status: BookingStatus,
        reason: String,
        settlement: Settlement,
    },
    /// Lengthen it, billed at the locked price.
    Extend {
        minutes: u32,
        new_end: Timestamp,
        new_total: Money,
    },
    /// Let it run past its end without charge until `until`.
    Grace {
        minutes: u32,
        until: Timestamp,
    },
}

pub fn sweep_outcome(
    booking: &Booking,
    decision: &TimeoutDecision,
    now: Timestamp,
    max_extensions: u32,
) -> SweepOutcome {
    let over = now.unix_seconds() >= booking.end_at.unix_seconds_ceil();
    let within_budget = booking.extensions < i64::from(max_extensions);
    let action = match decision.action {
        TimeoutAction::Keep if over => TimeoutAction::Expire,
        TimeoutAction::Extend(_) | TimeoutAction::Grace(_) if !within_budget => {
            TimeoutAction::Expire
        }
        TimeoutAction::Extend(0) | TimeoutAction::Grace(0) if over => TimeoutAction::Expire,
        action => action,
    };
    match action {
        TimeoutAction::Keep => SweepOutcome::Keep,
        TimeoutAction::Expire => {
            let (status, reason) = if over {
                (BookingStatus::Completed, "booked time is over".to_owned())
            } else {
                (BookingStatus::Expired, decision.reason.clone())
            };
            SweepOutcome::End {
                status,
                reason,
                settlement: settle(booking.total, booking.start_at, booking.end_at, now),
            }
        }
        TimeoutAction::Extend(minutes) => {
            let added_seconds = i64::from(minutes) * 60;
            SweepOutcome::Extend {
                minutes,
                new_end: booking.end_at.plus_seconds(added_seconds),
                new_total: booking
                    .total
                    .saturating_add(extension_cost(booking.price_per_hour, added_seconds)),
            }
        }
        TimeoutAction::Grace(minutes) => SweepOutcome::Grace {
            minutes,
            until: now.plus_seconds(i64::from(minutes) * 60),
        },
    }
}
