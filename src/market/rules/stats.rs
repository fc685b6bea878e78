//! Statistics over prices, as the pricing endpoint and the offer views report them.

use crate::domain::Money;

/// The median of `prices` (sorted here); the mean of the middle two, rounded half up, for an even
/// count. None for no prices.
pub fn median(prices: &[Money]) -> Option<Money> {
    let mut sorted = prices.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    Some(if n % 2 == 1 {
        sorted[n / 2]
    } else {
        Money::average([sorted[n / 2 - 1], sorted[n / 2]])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(micros: i64) -> Money {
        Money::from_micros(micros)
    }

    #[test]
    fn median_of_even_count_rounds_half_up() {
        assert_eq!(median(&[m(2), m(1)]), Some(m(2)));
        assert_eq!(median(&[m(10), m(1), m(3)]), Some(m(3)));
        assert_eq!(median(&[m(2), m(4), m(6), m(8)]), Some(m(5)));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn average_is_exact_integer_rounding() {
        assert_eq!(Money::average([m(1), m(2)]), m(2));
        assert_eq!(
            Money::average([m(333_333), m(333_333), m(333_334)]),
            m(333_333)
        );
        assert_eq!(Money::average([]), Money::ZERO);
    }
}
