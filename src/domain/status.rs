//! Lifecycle states. Each is stored as the lower-case word the API shows; the SQL (CHECK constraints,
//! the partial unique index on `'active'`, the triggers) depends on those exact words, which the tests
//! below pin.

use std::fmt;
use std::str::FromStr;

/// A status word that is not one of the type's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status must be one of {expected}")]
pub struct UnknownStatus {
    pub expected: &'static str,
    pub found: String,
}

macro_rules! status_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            const WORDS: &'static str = concat_words!($($word),+);

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }

            /// The API document's schema of a `status` query filter: a status, or empty for any.
            pub fn filter_schema() -> utoipa::openapi::schema::Object {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($word),+, ""]))
                    .build()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// Case-insensitive, as the query filters have always been.
        impl FromStr for $name {
            type Err = UnknownStatus;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|status| status.as_str().eq_ignore_ascii_case(s))
                    .ok_or_else(|| UnknownStatus { expected: Self::WORDS, found: s.to_owned() })
            }
        }

        /// How a row's status column is decoded (`#[sqlx(try_from = "String")]`).
        impl TryFrom<String> for $name {
            type Error = UnknownStatus;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                value.parse()
            }
        }
    };
}

macro_rules! concat_words {
    ($first:literal $(, $rest:literal)*) => { concat!($first $(, ", ", $rest)*) };
}

status_enum!(
    /// Whether a GPU can be booked.
    GpuStatus { Available => "available", Booked => "booked", Offline => "offline" }
);

status_enum!(
    /// A booking's lifecycle, which is also its order's.
    BookingStatus {
        Active => "active",
        Completed => "completed",
        Cancelled => "cancelled",
        Expired => "expired",
    }
);

status_enum!(
    /// What moderation made of a review.
    ReviewStatus { Accepted => "accepted", Flagged => "flagged", Rejected => "rejected" }
);

status_enum!(
    /// A bid for capacity: open (`pending`) until its client cancels it.
    BidStatus { Pending => "pending", Accepted => "accepted", Cancelled => "cancelled" }
);

/// How many GPUs of a set are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct StatusCounts {
    pub total: i64,
    pub available: i64,
    pub booked: i64,
    pub offline: i64,
}

impl StatusCounts {
    pub fn of(statuses: impl IntoIterator<Item = GpuStatus>) -> Self {
        statuses
            .into_iter()
            .fold(Self::default(), |mut counts, status| {
                counts.total += 1;
                match status {
                    GpuStatus::Available => counts.available += 1,
                    GpuStatus::Booked => counts.booked += 1,
                    GpuStatus::Offline => counts.offline += 1,
                }
                counts
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_words_the_sql_depends_on() {
        assert_eq!(BookingStatus::Active.as_str(), "active");
        assert_eq!(GpuStatus::Available.as_str(), "available");
        assert_eq!(GpuStatus::Booked.as_str(), "booked");
        assert_eq!(GpuStatus::Offline.as_str(), "offline");
        assert_eq!(ReviewStatus::Accepted.as_str(), "accepted");
        assert_eq!(ReviewStatus::Flagged.as_str(), "flagged");
        assert_eq!(BidStatus::Pending.as_str(), "pending");
        assert_eq!(BidStatus::Cancelled.as_str(), "cancelled");
    }

    #[test]
    fn parsing_ignores_case_and_names_the_choices() {
        assert_eq!("Completed".parse(), Ok(BookingStatus::Completed));
        let err = "lost".parse::<GpuStatus>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "status must be one of available, booked, offline"
        );
    }

    #[test]
    fn serde_uses_the_stored_words() {
        assert_eq!(
            serde_json::to_string(&ReviewStatus::Flagged)
                .ok()
                .as_deref(),
            Some("\"flagged\"")
        );
    }
}
