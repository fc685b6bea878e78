//! The market facts a pricing policy sees about a model.

use crate::domain::{StatusCounts, Timestamp};
use crate::policy::MarketFacts;

/// How many history points a policy sees as `recent_prices`.
pub const RECENT_PRICE_POINTS: usize = 12;
/// `bookings_last_hour` counts bookings that started within this window.
pub const BOOKING_RATE_WINDOW_SECONDS: i64 = 3_600;

/// The start of the window `bookings_last_hour` counts from.
pub fn booking_rate_since(now: Timestamp) -> Timestamp {
    now.minus_seconds(BOOKING_RATE_WINDOW_SECONDS)
}

/// Utilization is booked / (available + booked): offline GPUs are no capacity; 0 without capacity.
pub fn utilization(counts: StatusCounts) -> f64 {
    let capacity = counts.available + counts.booked;
    if capacity == 0 {
        0.0
    } else {
        counts.booked as f64 / capacity as f64
    }
}

pub fn market_facts(
    counts: StatusCounts,
    bookings_last_hour: i64,
    recent_prices: Vec<f64>,
) -> MarketFacts {
    let to_u32 = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
    MarketFacts {
        total_gpus: to_u32(counts.total),
        available_gpus: to_u32(counts.available),
        booked_gpus: to_u32(counts.booked),
        utilization: utilization(counts),
        bookings_last_hour: to_u32(bookings_last_hour),
        recent_prices,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_gpus_are_not_capacity() {
        let counts = StatusCounts {
            total: 5,
            available: 1,
            booked: 3,
            offline: 1,
        };
        let facts = market_facts(counts, 7, vec![1.0]);
        assert_eq!(facts.utilization, 0.75);
        assert_eq!(facts.total_gpus, 5);
        assert_eq!(facts.bookings_last_hour, 7);
        assert_eq!(utilization(StatusCounts::default()), 0.0);
    }
}
