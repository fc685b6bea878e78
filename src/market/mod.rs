//! The marketplace rules: registry, booking, orders, reviews, pricing and the older offer views.
//! No SQL and no HTTP here: storage goes through `store`, decisions through `policy`, and the rules
//! themselves are pure functions in [`rules`], shared with the backtesting lab.

pub mod booking;
pub mod catalogue;
pub mod comparison;
pub mod decision_log;
pub mod facts;
pub mod idempotency;
pub mod model_pricing;
pub mod offers;
pub mod orders;
pub mod policy_admin;
pub mod price_refresh;
pub mod quote;
pub mod registry;
pub mod replay;
pub mod reviews;
pub mod rules;
pub mod sweeper;
pub mod system;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{Config, Role};
use crate::domain::{PrincipalId, Timestamp};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::policy::Policies;
use crate::store::Store;

pub use crate::domain::Money;

/// Who is calling, as established by the API layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: PrincipalId,
    pub roles: HashSet<Role>,
}

impl Principal {
    pub fn new(id: impl Into<PrincipalId>, roles: impl IntoIterator<Item = Role>) -> Self {
        Self {
            id: id.into(),
            roles: roles.into_iter().collect(),
        }
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn is_admin(&self) -> bool {
        self.has(Role::Admin)
    }

    /// The one role check: `role` (or admin, who may do anything) for `action`.
    pub fn require(&self, role: Role, action: &str) -> Result<()> {
        if self.has(role) || self.is_admin() {
            Ok(())
        } else {
            Err(Error::forbidden(format!(
                "{action} needs the {} role",
                role_name(role)
            )))
        }
    }

    pub fn require_admin(&self) -> Result<()> {
        self.require(Role::Admin, "this action")
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Client => "client",
        Role::Miner => "miner",
        Role::Admin => "admin",
    }
}

/// Everything the rules need, shared by the HTTP handlers and the background tasks.
#[derive(Clone)]
pub struct Market {
    pub store: Store,
    pub policies: Arc<dyn Policies>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub prices: price_refresh::PriceRefresher,
    pub facts: facts::FactsCache,
    /// Bumped after every write this replica commits that changes what the catalogue shows.
    catalogue: Arc<AtomicU64>,
}

impl Market {
    pub fn new(
        store: Store,
        policies: Arc<dyn Policies>,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            policies,
            config,
            metrics,
            prices: price_refresh::PriceRefresher::default(),
            facts: facts::FactsCache::default(),
            catalogue: Arc::default(),
        }
    }

    /// Heartbeats older than this mean the GPU is gone.
    pub fn heartbeat_cutoff(&self, now: Timestamp) -> Timestamp {
        now.minus_seconds(i64::try_from(self.config.heartbeat.timeout_seconds).unwrap_or(i64::MAX))
    }

    /// Changes whenever this replica committed a write visible in the catalogue (GPUs, bookings,
    /// ratings, prices). Writes by other replicas are not seen here; read caches bound that with a TTL.
    pub fn catalogue_generation(&self) -> u64 {
        self.catalogue.load(Ordering::Acquire)
    }

    fn catalogue_changed(&self) {
        self.catalogue.fetch_add(1, Ordering::AcqRel);
    }

    /// After a write that changes what a model's GPUs show or cost: caches and current prices follow.
    fn model_changed(&self, model_key: &str) {
        self.catalogue_changed();
        self.prices.mark_dirty(model_key);
    }
}
