//! [`Slot`]: the name of a decision point operators can replace, for the callers that choose one at
//! run time (`policies.toml`, the admin API, the CLI, metric labels). Typed code uses the slot kinds
//! in `kinds/` instead.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::error::PolicyError;

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

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Slot {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Slot::ALL
            .into_iter()
            .find(|slot| slot.as_str() == s)
            .ok_or_else(|| PolicyError::UnknownSlot(s.to_owned()))
    }
}
