//! Prometheus metrics per slot and module version (first 12 hex digits of its sha256; `none` when a
//! configured slot has no valid version loaded).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::call::{CallCost, FailureKind};
use super::slot::Slot;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub slot: &'static str,
    pub version: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub slot: &'static str,
    pub version: String,
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SlotLabels {
    pub slot: &'static str,
}

/// The series one module version's calls update. Counters and histograms share their storage with
/// the families they came from, so a version that keeps its series counts every call without hashing
/// labels, taking the families' locks or allocating its label.
#[derive(Clone)]
pub struct VersionSeries {
    calls: Counter,
    latency: Histogram,
    fuel: Histogram,
}

impl VersionSeries {
    pub fn call(&self, decisions: u64, cost: &CallCost) {
        self.calls.inc_by(decisions);
        self.latency.observe(cost.elapsed.as_secs_f64());
        self.fuel.observe(cost.fuel_used as f64);
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Cheap to clone: every family shares its storage.
#[derive(Clone)]
pub struct PolicyMetrics {
    calls: Family<VersionLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    fallbacks: Family<VersionLabels, Counter>,
    latency: HistogramFamily<VersionLabels>,
    fuel: HistogramFamily<VersionLabels>,
    reloads: Family<SlotLabels, Counter>,
    rejected_reloads: Family<SlotLabels, Counter>,
}

impl Default for PolicyMetrics {
    fn default() -> Self {
        Self {
            calls: Family::default(),
            failures: Family::default(),
            fallbacks: Family::default(),
            // 10 µs .. ~5 s: instantiation plus a call is ~40 µs for Rust, milliseconds for JS/Python.
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1e-5, 2.5, 15))
            }),
            // 1 000 .. ~1.6e10 fuel units: pricing-demand uses ~4 500, the default budget 1e7.
            fuel: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1e3, 4.0, 13))
            }),
            reloads: Family::default(),
            rejected_reloads: Family::default(),
        }
    }
}

impl PolicyMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "policy_calls",
            "Policy decisions asked of a module",
            self.calls.clone(),
        );
        registry.register(
            "policy_failures",
            "Policy calls that failed, by kind",
            self.failures.clone(),
        );
        registry.register(
            "policy_fallbacks",
            "Decisions answered by the slot's fallback",
            self.fallbacks.clone(),
        );
        registry.register_with_unit(
            "policy_call_duration",
            "Time of one guest call, instantiation included",
            Unit::Seconds,
            self.latency.clone(),
        );
        registry.register(
            "policy_fuel_used",
            "Fuel used by one guest call",
            self.fuel.clone(),
        );
        registry.register(
            "policy_reloads",
            "Module versions swapped in",
            self.reloads.clone(),
        );
        registry.register(
            "policy_rejected_reloads",
            "Candidate modules or configurations rejected",
            self.rejected_reloads.clone(),
        );
    }

    /// The call series of one module version, looked up once (see [`VersionSeries`]).
    pub fn series(&self, slot: Slot, version: &str) -> VersionSeries {
        let labels = VersionLabels {
            slot: slot.as_str(),
            version: version.to_owned(),
        };
        VersionSeries {
            calls: self.calls.get_or_create(&labels).clone(),
            latency: self.latency.get_or_create(&labels).clone(),
            fuel: self.fuel.get_or_create(&labels).clone(),
        }
    }

    pub fn fallback(&self, slot: Slot, version: &str, kind: FailureKind) {
        let version = version.to_owned();
        self.failures
            .get_or_create(&FailureLabels {
                slot: slot.as_str(),
                version: version.clone(),
                kind: kind.as_str(),
            })
            .inc();
        self.fallbacks
            .get_or_create(&VersionLabels {
                slot: slot.as_str(),
                version,
            })
            .inc();
    }

    pub fn reload(&self, slot: Slot, accepted: bool) {
        let family = if accepted {
            &self.reloads
        } else {
            &self.rejected_reloads
        };
        family
            .get_or_create(&SlotLabels {
                slot: slot.as_str(),
            })
            .inc();
    }
}
