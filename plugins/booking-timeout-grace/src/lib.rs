//! `booking-timeout-grace`: the default booking-timeout policy.
//!
//! A booking expires at its end, except that a GPU still heartbeating with a job id set gets a grace
//! period (a limited number of times) so a running job is not killed mid-step. A booking whose GPU has
//! not sent a heartbeat for longer than the configured time expires early. A booking whose GPU never
//! sent a heartbeat is not expired early: "no data" is not "lost".
//!
//! Configuration keys (optional, integers as strings): `grace_minutes` (15), `max_grace_periods` (2),
//! `heartbeat_timeout_minutes` (10).

wit_bindgen::generate!({ path: "../wit", world: "booking-timeout-policy" });

use exports::gpu_market::policy::booking_timeout::{
    BookingFacts, Guest, TimeoutAction, TimeoutDecision,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub grace_minutes: u32,
    pub max_grace_periods: u32,
    pub heartbeat_timeout_minutes: u32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            grace_minutes: 15,
            max_grace_periods: 2,
            heartbeat_timeout_minutes: 10,
        }
    }
}

impl Params {
    pub fn from_config(config: &[(String, String)]) -> Result<Self, String> {
        let mut params = Self::default();
        for (key, value) in config {
            let slot = match key.as_str() {
                "grace_minutes" => &mut params.grace_minutes,
                "max_grace_periods" => &mut params.max_grace_periods,
                "heartbeat_timeout_minutes" => &mut params.heartbeat_timeout_minutes,
                _ => continue,
            };
            *slot = value
                .trim()
                .parse()
                .map_err(|_| format!("config {key}: {value:?} is not a whole number"))?;
        }
        if params.grace_minutes == 0 {
            return Err("config: grace_minutes must be at least 1".into());
        }
        Ok(params)
    }
}

pub fn decide(params: &Params, booking: &BookingFacts) -> TimeoutDecision {
    let timeout_secs = i64::from(params.heartbeat_timeout_minutes) * 60;
    let silent_for = booking
        .last_heartbeat_unix
        .map(|hb| booking.now_unix.saturating_sub(hb));
    let heartbeating = silent_for.is_some_and(|s| s <= timeout_secs);

    if booking.now_unix < booking.end_unix {
        return match silent_for {
            Some(silent) if silent > timeout_secs => TimeoutDecision {
                action: TimeoutAction::Expire,
                reason: format!(
                    "no heartbeat for {} min (limit {} min): ending early",
                    silent / 60,
                    params.heartbeat_timeout_minutes
                ),
            },
            _ => TimeoutDecision {
                action: TimeoutAction::Keep,
                reason: "booked time remains".into(),
            },
        };
    }

    let has_job = booking
        .job_id
        .as_deref()
        .is_some_and(|j| !j.trim().is_empty());
    if heartbeating && has_job && booking.extensions < params.max_grace_periods {
        return TimeoutDecision {
            action: TimeoutAction::Grace(params.grace_minutes),
            reason: format!(
                "job still running on a live GPU: {} min grace ({} of {})",
                params.grace_minutes,
                booking.extensions + 1,
                params.max_grace_periods
            ),
        };
    }
    let why = if !has_job {
        "booked time is over"
    } else if !heartbeating {
        "booked time is over and the GPU is not heartbeating"
    } else {
        "booked time is over and the grace periods are used up"
    };
    TimeoutDecision {
        action: TimeoutAction::Expire,
        reason: why.into(),
    }
}

struct BookingTimeoutGrace;

impl Guest for BookingTimeoutGrace {
    fn decide(
        config: Vec<(String, String)>,
        booking: BookingFacts,
    ) -> Result<TimeoutDecision, String> {
        Ok(decide(&Params::from_config(&config)?, &booking))
    }
}

export!(BookingTimeoutGrace);
