//! How long a booking runs: whole seconds, between one second and a year.

use std::fmt;

/// The longest booking, in hours.
pub const MAX_BOOKING_HOURS: f64 = 8_760.0;
/// The shortest, in hours: a little over one second. A plain bound (rather than "rounds to at least one
/// second") so that the API document can state it exactly.
pub const MIN_BOOKING_HOURS: f64 = 0.0003;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DurationError {
    #[error("duration_hours must be greater than 0 and at most {MAX_BOOKING_HOURS}")]
    OutOfRange,
    #[error("duration_hours must be at least one second (0.0003 hours)")]
    UnderOneSecond,
}

/// A booking's length. The hours a client asks for are rounded to the second once, here; every bill
/// and end time is computed from these seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BookingDuration(i64);

impl BookingDuration {
    pub fn from_hours(hours: f64) -> Result<Self, DurationError> {
        if !hours.is_finite() || hours <= 0.0 || hours > MAX_BOOKING_HOURS {
            return Err(DurationError::OutOfRange);
        }
        if hours < MIN_BOOKING_HOURS {
            return Err(DurationError::UnderOneSecond);
        }
        Ok(Self((hours * 3600.0).round() as i64))
    }

    /// A duration read back from storage, where it was validated on the way in.
    pub const fn from_seconds(seconds: i64) -> Self {
        Self(if seconds < 1 { 1 } else { seconds })
    }

    pub const fn seconds(self) -> i64 {
        self.0
    }

    /// Hours to six decimals, as every number the API shows: 0.333 h booked is 1 199 s, shown as
    /// 0.333056.
    pub fn hours(self) -> f64 {
        (self.0 as f64 / 3600.0 * 1e6).round() / 1e6
    }
}

impl fmt::Display for BookingDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} h", self.hours())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_bounded() {
        assert_eq!(
            BookingDuration::from_hours(0.0),
            Err(DurationError::OutOfRange)
        );
        assert_eq!(
            BookingDuration::from_hours(-1.0),
            Err(DurationError::OutOfRange)
        );
        assert_eq!(
            BookingDuration::from_hours(f64::NAN),
            Err(DurationError::OutOfRange)
        );
        assert_eq!(
            BookingDuration::from_hours(8760.5),
            Err(DurationError::OutOfRange)
        );
        assert_eq!(
            BookingDuration::from_hours(1e-5),
            Err(DurationError::UnderOneSecond)
        );
        assert_eq!(
            BookingDuration::from_hours(0.00029),
            Err(DurationError::UnderOneSecond)
        );
        assert_eq!(
            BookingDuration::from_hours(MIN_BOOKING_HOURS).map(|d| d.seconds()),
            Ok(1)
        );
        assert_eq!(
            BookingDuration::from_hours(8760.0).map(|d| d.seconds()),
            Ok(8760 * 3600)
        );
        assert_eq!(
            BookingDuration::from_hours(0.001).map(|d| d.seconds()),
            Ok(4)
        );
        assert_eq!(BookingDuration::from_hours(1.5).map(|d| d.hours()), Ok(1.5));
        assert_eq!(
            BookingDuration::from_hours(0.333).map(|d| d.hours()),
            Ok(0.333056)
        );
    }
}
