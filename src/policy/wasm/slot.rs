//! [`Slot`]: the name of a decision point operators can replace, for the callers that choose one at
//! run time (`policies.toml`, the admin API, the CLI, metric labels). Typed code uses the slot kinds
//! in `kinds/` instead.

use std::fmt;

use serde::Serialize;

/// A decision point operators can replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Slot {
    Pricing,
    BookingTimeout,
    ReviewModeration,
}

impl Slot {
    pub const ALL: [Slot; 3] = [Slot::Pricing, Slot::BookingTimeout, Slot::ReviewModeration];

    /// The slot's name in `policies.toml`, the admin API and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pricing => "pricing",
            Self::BookingTimeout => "booking-timeout",
            Self::ReviewModeration => "review-moderation",
        }
    }

    /// The WIT interface the slot's modules export.
    pub fn interface(self) -> &'static str {
        self.as_str()
    }
}

// Parsing (`"pricing".parse::<Slot>()`) is in `error.rs`: its error is a `PolicyError`.

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
