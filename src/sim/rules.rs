//! The one place where the simulator touches the market's rules and typed values.
//!
//! TEMPORARY: until `market::rules` lands on main these are stand-ins; each is replaced by a call into
//! the shared pure rules (the server's code), so that nothing here is a second copy of a rule.

use crate::policy::{
    GpuFacts, MarketFacts, PriceQuote, PricingRequest, RequestFacts, TimeFacts, TimeoutAction,
    TimeoutDecision, TimeoutRequest,
};

pub use crate::market::Money;

pub const MICROS_PER_SECOND: i64 = 1_000_000;
/// How many history points a policy sees as `recent_prices`.
pub const RECENT_PRICE_POINTS: usize = 12;
/// `bookings_last_hour` counts bookings that started within this many seconds.
pub const BOOKING_RATE_WINDOW_SECONDS: i64 = 3_600;

/// Whole seconds of a booking of `hours`, or why it cannot be booked.
pub fn booking_seconds(hours: f64) -> Result<i64, String> {
    crate::market::booking::duration_seconds(hours).map_err(|e| e.to_string())
}

/// The start (unix seconds) of the price-history bucket containing `now_unix`.
pub fn history_bucket(now_unix: i64, interval_secs: i64) -> i64 {
    now_unix.div_euclid(interval_secs) * interval_secs
}

/// What a policy sees about a model with these GPU counts.
pub fn market_facts(
    total: u32,
    available: u32,
    booked: u32,
    bookings_last_hour: u32,
    recent_prices: &[Money],
) -> MarketFacts {
    let capacity = available + booked;
    MarketFacts {
        total_gpus: total,
        available_gpus: available,
        booked_gpus: booked,
        utilization: if capacity == 0 {
            0.0
        } else {
            f64::from(booked) / f64::from(capacity)
        },
        bookings_last_hour,
        recent_prices: recent_prices.iter().map(|p| p.as_units()).collect(),
    }
}

pub fn pricing_request(
    gpu: GpuFacts,
    market: MarketFacts,
    duration_hours: f64,
    now_micros: i64,
) -> PricingRequest {
    let now = chrono::DateTime::from_timestamp_micros(now_micros).unwrap_or_default();
    PricingRequest {
        gpu,
        market,
        request: RequestFacts {
            duration_hours,
            start_unix: now_micros.div_euclid(MICROS_PER_SECOND),
        },
        time: TimeFacts::at(now),
    }
}

/// A policy's answer as the market takes it: a price in micro-units; an unusable price falls back to
/// the asking price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accepted {
    pub price: Money,
    pub multiplier: f64,
    pub fallback: bool,
}

pub fn accept_quote(asking: Money, quote: &PriceQuote) -> Accepted {
    match Money::from_units(quote.price_per_hour) {
        Some(price) if price > Money::ZERO => Accepted {
            price,
            multiplier: quote.multiplier,
            fallback: quote.source.fallback,
        },
        _ => Accepted {
            price: asking,
            multiplier: 1.0,
            fallback: true,
        },
    }
}

/// What a booking of `seconds` at `price` per hour costs.
pub fn booking_total(price: Money, seconds: i64) -> Money {
    price.pro_rata(seconds, 3_600)
}

/// The state of an active booking the sweeper looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveBooking {
    pub id: String,
    pub gpu_id: String,
    pub start: i64,
    pub end: i64,
    pub price: Money,
    pub total: Money,
    pub extensions: u32,
    pub grace_until: Option<i64>,
}

pub fn timeout_request(
    booking: &ActiveBooking,
    now: i64,
    last_heartbeat: Option<i64>,
) -> TimeoutRequest {
    let end_unix =
        booking.end.div_euclid(MICROS_PER_SECOND) + i64::from(booking.end % MICROS_PER_SECOND != 0);
    TimeoutRequest {
        booking_id: booking.id.clone(),
        gpu_id: booking.gpu_id.clone(),
        start_unix: booking.start.div_euclid(MICROS_PER_SECOND),
        end_unix,
        now_unix: now.div_euclid(MICROS_PER_SECOND),
        last_heartbeat_unix: last_heartbeat.map(|t| t.div_euclid(MICROS_PER_SECOND)),
        job_id: None,
        extensions: booking.extensions,
    }
}

/// What the sweeper does with a booking after the timeout policy answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepOutcome {
    Keep,
    /// Ends now; `charged` is what the client pays in total.
    Complete {
        charged: Money,
    },
    Expire {
        charged: Money,
    },
    Extend {
        new_end: i64,
        new_total: Money,
    },
    Grace {
        until: i64,
    },
}

pub fn sweep_outcome(
    booking: &ActiveBooking,
    decision: &TimeoutDecision,
    now: i64,
    max_extensions: u32,
) -> SweepOutcome {
    let request = timeout_request(booking, now, None);
    let over = request.now_unix >= request.end_unix;
    let within_budget = booking.extensions < max_extensions;
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
            let elapsed = (now - booking.start).clamp(0, booking.end - booking.start);
            let charged = if now >= booking.end {
                booking.total
            } else {
                booking
                    .total
                    .pro_rata(elapsed, (booking.end - booking.start).max(1))
            };
            if over {
                SweepOutcome::Complete { charged }
            } else {
                SweepOutcome::Expire { charged }
            }
        }
        TimeoutAction::Extend(minutes) => {
            let added_seconds = i64::from(minutes) * 60;
            SweepOutcome::Extend {
                new_end: booking.end + added_seconds * MICROS_PER_SECOND,
                new_total: Money::from_micros(
                    booking.total.micros() + booking.price.pro_rata(added_seconds, 3600).micros(),
                ),
            }
        }
        TimeoutAction::Grace(minutes) => SweepOutcome::Grace {
            until: now + i64::from(minutes) * 60 * MICROS_PER_SECOND,
        },
    }
}

/// The list filter's model matching: case-insensitive, spaces/dashes/underscores ignored, `*`/`?`
/// wildcards, plain text a substring; `*` alone matches every GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFilter {
    key: String,
}

impl ModelFilter {
    pub fn parse(text: &str) -> Self {
        Self {
            key: crate::market::model_match::model_key(text),
        }
    }

    pub fn matches(&self, model: &str) -> bool {
        let model = crate::market::model_match::model_key(model);
        if !self.key.contains(['*', '?']) {
            return model.contains(&self.key);
        }
        wildcard(self.key.as_bytes(), model.as_bytes())
    }
}

fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| wildcard(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && wildcard(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && wildcard(rest, &text[1..]),
    }
}
