//! Turning a GPU and its market into a pricing request, and a policy's answer into a price.

use crate::domain::{BookingDuration, Gpu, Money, Timestamp};
use crate::policy::{
    DecisionSource, GpuFacts, MarketFacts, PriceQuote, PriceState, PricingRequest, RequestFacts,
    TimeFacts,
};
use crate::store::gpus::RepricingRow;

/// A price the market will charge, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    pub price: Money,
    pub multiplier: f64,
    pub explanation: String,
    pub source: DecisionSource,
    /// The guardrails' state to keep for the GPU if this quote is booked (None: keep the old one).
    pub state: Option<PriceState>,
}

pub fn gpu_facts(gpu: &Gpu) -> GpuFacts {
    GpuFacts {
        gpu_id: gpu.id.to_string(),
        model: gpu.model.clone(),
        memory_gb: gpu.memory_gb,
        region: gpu.region.clone(),
        base_price: gpu.asking_price.as_units(),
    }
}

/// [`gpu_facts`] of a GPU read for repricing.
pub fn repricing_facts(gpu: &RepricingRow) -> GpuFacts {
    GpuFacts {
        gpu_id: gpu.id.to_string(),
        model: gpu.model.clone(),
        memory_gb: gpu.memory_gb,
        region: gpu.region.clone(),
        base_price: gpu.asking_price.as_units(),
    }
}

pub fn time_facts(now: Timestamp) -> TimeFacts {
    TimeFacts {
        now_unix: now.unix_seconds(),
        hour_of_day: now.hour_of_day(),
        weekday: now.weekday(),
    }
}

/// What the pricing policy is asked when `gpu` is booked for `duration_hours` starting `now`, given
/// what is remembered of its last booked quote.
pub fn pricing_request(
    gpu: GpuFacts,
    market: MarketFacts,
    duration_hours: f64,
    now: Timestamp,
    previous: Option<PriceState>,
) -> PricingRequest {
    PricingRequest {
        gpu,
        market,
        request: RequestFacts {
            duration_hours,
            start_unix: now.unix_seconds(),
        },
        time: time_facts(now),
        previous,
    }
}

/// A policy's price, made safe to charge: a price that is not a positive finite amount (a policy bug
/// the host guardrails should already have caught) falls back to the asking price.
pub fn accept_quote(asking: Money, quote: PriceQuote) -> Quote {
    match Money::from_units(quote.price_per_hour) {
        Some(price) if price > Money::ZERO => Quote {
            price,
            multiplier: quote.multiplier,
            explanation: quote.explanation,
            source: quote.source,
            state: quote.state,
        },
        _ => Quote {
            price: asking,
            multiplier: 1.0,
            explanation: "asking price (policy returned no usable price)".to_owned(),
            source: DecisionSource {
                fallback: true,
                ..quote.source
            },
            state: None,
        },
    }
}

/// The bill of a booking: the hourly price pro rata to the second, rounded once.
pub fn booking_total(price_per_hour: Money, duration: BookingDuration) -> Money {
    price_per_hour.pro_rata(duration.seconds(), 3_600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(price: f64) -> PriceQuote {
        PriceQuote {
            price_per_hour: price,
            multiplier: 2.0,
            explanation: "x".into(),
            source: DecisionSource::builtin(),
            state: None,
        }
    }

    #[test]
    fn unusable_prices_fall_back_to_the_asking_price() {
        let asking = Money::from_micros(500_000);
        assert_eq!(
            accept_quote(asking, quote(1.25)).price,
            Money::from_micros(1_250_000)
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let accepted = accept_quote(asking, quote(bad));
            assert_eq!(accepted.price, asking);
            assert!(accepted.source.fallback);
        }
    }

    #[test]
    fn totals_are_pro_rata_to_the_second() {
        let price = Money::from_units(0.333333).unwrap_or_default();
        let duration = BookingDuration::from_hours(1.5).unwrap_or(BookingDuration::from_seconds(1));
        assert_eq!(booking_total(price, duration).micros(), 500_000);
    }
}
