//! The WebAssembly policy runtime: each slot (pricing, booking timeout, review moderation) is served by
//! a sandboxed component from the policies directory, hot-reloaded, limited, and backed by the slot's
//! fallback whenever the module cannot give a valid answer.
//!
//! - [`engine`]: one wasmtime engine per process (pooling allocator, fuel, epoch ticker).
//! - [`module`]: compile and check a candidate version; [`call`]: one limited guest call.
//! - [`slots`]: per-slot bindings, conversions, output checks and fallbacks.
//! - [`runtime`]: the serving state and admin operations; [`decisions`]: the [`Policies`] impl.
//! - [`reload`]: the directory watcher; [`config`]: `policies.toml`; [`guardrails`]: pricing bounds.
//! - [`check`]: the `policy check` / `policy test` CLI helpers; [`metrics`]: Prometheus metrics.
//!
//! [`Policies`]: crate::policy::Policies

mod call;
mod check;
mod config;
mod decisions;
mod engine;
mod error;
mod guardrails;
mod kind;
mod limits;
mod metrics;
mod module;
mod reload;
mod runtime;
mod slot;
mod slots;
mod tenant;

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

pub use call::{CallCost, FailureKind};
pub use check::{CheckReport, check_module, test_module};
pub use config::CONFIG_FILE;
pub use error::{PolicyError, PolicyErrorKind};
pub use guardrails::Guardrails;
pub use kind::SlotKind;
pub use limits::Limits;
pub use module::{CheckStep, SampleRun, sha256_hex, sha256_prefix};
pub use runtime::PolicyRuntime;
pub use slot::SlotStatus;
pub use slots::moderation::ModerationSlot;
pub use slots::pricing::PricingSlot;
pub use slots::timeout::TimeoutSlot;
pub use tenant::{
    PricingStrategy, PricingTenant, Strategy, Tenant, TenantAnswer, TenantQuote, TimeoutAnswer,
    TimeoutStrategy, TimeoutTenant,
};

/// The WIT package every module must be built against, and the version this host speaks.
pub const CONTRACT_PACKAGE: &str = "gpu-market:policy";
pub const CONTRACT_VERSION: &str = "0.1.0";

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

    fn index(self) -> usize {
        self as usize
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
