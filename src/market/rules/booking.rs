//! Money at the end of a booking.

use crate::domain::{Money, Timestamp};

/// What a booking costs when it ends: the used share, and the rest refunded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    pub charged: Money,
    pub refund: Money,
}

/// Settles a booking of `total` booked from `start` to `end` that ends at `at`: the used share of its
/// booked time to the second, so `charged + refund == total` exactly.
pub fn settle(total: Money, start: Timestamp, end: Timestamp, at: Timestamp) -> Settlement {
    let booked_seconds = end.seconds_since(start).max(1);
    let used_seconds = at.seconds_since(start).clamp(0, booked_seconds);
    let charged = total.pro_rata(used_seconds, booked_seconds);
    Settlement {
        charged,
        refund: total.saturating_sub(charged),
    }
}

/// What `added_seconds` more of a booking at `price_per_hour` cost.
pub fn extension_cost(price_per_hour: Money, added_seconds: i64) -> Money {
    price_per_hour.pro_rata(added_seconds, 3_600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64, micros: i64) -> Timestamp {
        Timestamp::from_micros(seconds * 1_000_000 + micros)
    }

    #[test]
    fn settlement_is_pro_rata_to_the_second_and_exact() {
        let total = Money::from_micros(500_000);
        let s = settle(total, at(0, 0), at(5400, 0), at(1800, 999_999));
        assert_eq!(s.charged.micros(), 166_667);
        assert_eq!(s.refund.micros(), 333_333);
        assert_eq!(s.charged.saturating_add(s.refund), total);
    }

    #[test]
    fn settlement_never_charges_more_than_the_total_or_less_than_zero() {
        let total = Money::from_micros(1_000_000);
        assert_eq!(
            settle(total, at(0, 0), at(3600, 0), at(0, -5)).charged,
            Money::ZERO
        );
        assert_eq!(
            settle(total, at(0, 0), at(3600, 0), at(10_000, 0)).charged,
            total
        );
    }
}
