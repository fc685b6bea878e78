//! Time in the domain: unix microseconds (UTC), shown as RFC 3339 with `Z`.

use std::fmt;

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::{Serialize, Serializer};

pub const MICROS_PER_SECOND: i64 = 1_000_000;

/// An instant, to the microsecond. Stored as `BIGINT` unix µs; serialized as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, sqlx::Type)]
#[sqlx(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        Self(Utc::now().timestamp_micros())
    }

    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn from_unix_seconds(seconds: i64) -> Self {
        Self(seconds.saturating_mul(MICROS_PER_SECOND))
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Whole seconds, rounded down.
    pub const fn unix_seconds(self) -> i64 {
        self.0.div_euclid(MICROS_PER_SECOND)
    }

    /// Whole seconds, rounded up: an end time a policy sees is never earlier than the real one.
    pub const fn unix_seconds_ceil(self) -> i64 {
        self.unix_seconds() + (self.0.rem_euclid(MICROS_PER_SECOND) != 0) as i64
    }

    pub const fn plus_seconds(self, seconds: i64) -> Self {
        Self(
            self.0
                .saturating_add(seconds.saturating_mul(MICROS_PER_SECOND)),
        )
    }

    pub const fn minus_seconds(self, seconds: i64) -> Self {
        self.plus_seconds(-seconds)
    }

    /// Whole seconds from `earlier` to `self` (negative when `earlier` is later), rounded toward zero.
    pub const fn seconds_since(self, earlier: Timestamp) -> i64 {
        (self.0 - earlier.0) / MICROS_PER_SECOND
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.0).unwrap_or_default()
    }

    /// 0-23, UTC.
    pub fn hour_of_day(self) -> u8 {
        self.to_datetime().hour() as u8
    }

    /// 0 = Monday .. 6 = Sunday, UTC.
    pub fn weekday(self) -> u8 {
        self.to_datetime().weekday().num_days_from_monday() as u8
    }

    pub fn rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(SecondsFormat::Micros, true)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.rfc3339())
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::DateTime,
            )))
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_down_and_up() {
        let t = Timestamp::from_micros(1_500_000);
        assert_eq!(t.unix_seconds(), 1);
        assert_eq!(t.unix_seconds_ceil(), 2);
        assert_eq!(Timestamp::from_unix_seconds(7).unix_seconds_ceil(), 7);
        assert_eq!(Timestamp::from_micros(-1).unix_seconds(), -1);
    }

    #[test]
    fn calendar_facts_are_utc() {
        // 2026-01-01T00:00:00Z was a Thursday.
        let t = Timestamp::from_unix_seconds(1_767_225_600);
        assert_eq!(t.hour_of_day(), 0);
        assert_eq!(t.weekday(), 3);
        assert_eq!(t.rfc3339(), "2026-01-01T00:00:00.000000Z");
    }
}
