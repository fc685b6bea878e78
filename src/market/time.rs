//! Time in the domain is unix microseconds (UTC), shown as RFC 3339 with `Z`.

use chrono::{DateTime, SecondsFormat, Utc};

pub const MICROS_PER_SECOND: i64 = 1_000_000;

pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

pub fn to_datetime(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

pub fn rfc3339(micros: i64) -> String {
    to_datetime(micros).to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn rfc3339_opt(micros: Option<i64>) -> Option<String> {
    micros.map(rfc3339)
}

pub fn unix_seconds(micros: i64) -> i64 {
    micros.div_euclid(MICROS_PER_SECOND)
}
