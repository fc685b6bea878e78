//! Money as integer micro-AITBC: sums, refunds and pro-rata splits never drift.

use std::fmt;

use serde::{Serialize, Serializer};

pub const MICROS_PER_UNIT: i64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, sqlx::Type)]
#[sqlx(transparent)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Converts an amount given as a JSON number, rounding to the nearest micro-unit.
    /// `None` for NaN, infinities and amounts too large to represent.
    pub fn from_units(units: f64) -> Option<Self> {
        if !units.is_finite() || units.abs() > 1e12 {
            return None;
        }
        Some(Self((units * MICROS_PER_UNIT as f64).round() as i64))
    }

    pub fn as_units(self) -> f64 {
        self.0 as f64 / MICROS_PER_UNIT as f64
    }

    /// `self × numerator / denominator`, rounded half away from zero, computed in 128 bits.
    pub fn pro_rata(self, numerator: i64, denominator: i64) -> Self {
        debug_assert!(denominator > 0);
        let scaled = self.0 as i128 * numerator as i128;
        let half = denominator as i128 / 2;
        let rounded = if scaled >= 0 {
            (scaled + half) / denominator as i128
        } else {
            (scaled - half) / denominator as i128
        };
        Self(rounded as i64)
    }

    pub fn saturating_sub(self, other: Money) -> Self {
        Self(self.0.saturating_sub(other.0))
    }

    pub fn saturating_add(self, other: Money) -> Self {
        Self(self.0.saturating_add(other.0))
    }

    /// The mean of `amounts`, rounded half away from zero to the micro-unit; zero for none.
    pub fn average(amounts: impl IntoIterator<Item = Money>) -> Money {
        let (sum, count) = amounts
            .into_iter()
            .fold((0i128, 0i128), |(s, c), m| (s + m.0 as i128, c + 1));
        Self::mean(sum, count)
    }

    /// The mean of `count` amounts summing to `sum_micros`, rounded as [`Money::average`] rounds:
    /// for sums the database computed.
    pub fn mean(sum_micros: i128, count: i128) -> Money {
        if count <= 0 {
            return Money::ZERO;
        }
        let half = count / 2;
        let rounded = if sum_micros >= 0 {
            (sum_micros + half) / count
        } else {
            (sum_micros - half) / count
        };
        Money(rounded as i64)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(
            f,
            "{sign}{}.{:06}",
            abs / MICROS_PER_UNIT as u64,
            abs % MICROS_PER_UNIT as u64
        )
    }
}

/// JSON shows money as a number in AITBC; the nearest f64 to a 6-decimal value prints as that value.
impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.as_units())
    }
}

/// The OpenAPI schema, declared once: a number of AITBC with at most six decimals.
impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Number)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Double,
            )))
            .description(Some("AITBC, at most six decimals"))
            .into()
    }
}

impl utoipa::ToSchema for Money {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_round_to_micros() {
        assert_eq!(Money::from_units(0.333333).unwrap().micros(), 333_333);
        assert_eq!(Money::from_units(1.0000004).unwrap().micros(), 1_000_000);
        assert!(Money::from_units(f64::NAN).is_none());
        assert!(Money::from_units(f64::INFINITY).is_none());
    }

    #[test]
    fn pro_rata_rounds_half_up_and_splits_exactly() {
        let total = Money::from_micros(500_000);
        let charged = total.pro_rata(1, 3);
        assert_eq!(charged.micros(), 166_667);
        assert_eq!(
            charged.micros() + total.saturating_sub(charged).micros(),
            total.micros()
        );
    }

    #[test]
    fn serializes_as_a_plain_number() {
        assert_eq!(
            serde_json::to_string(&Money::from_micros(1_234_567)).unwrap(),
            "1.234567"
        );
        assert_eq!(
            serde_json::to_string(&Money::from_micros(500_000)).unwrap(),
            "0.5"
        );
        assert_eq!(Money::from_micros(-1_500).to_string(), "-0.001500");
    }
}
