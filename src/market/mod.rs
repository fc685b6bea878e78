//! The marketplace rules: registry, booking, orders, reviews, pricing and the older offer views.
//! No SQL and no HTTP here: storage goes through `store`, decisions through `policy`.

pub mod booking;
pub mod facts;
pub mod ids;
pub mod model_match;
pub mod money;
pub mod offers;
pub mod orders;
pub mod policy_admin;
pub mod pricing;
pub mod registry;
pub mod reviews;
pub mod sweeper;
pub mod system;
pub mod time;

use std::collections::HashSet;
use std::sync::Arc;

use crate::config::{Config, Role};
use crate::metrics::Metrics;
use crate::policy::Policies;
use crate::store::Store;

pub use money::Money;

/// Who is calling, as established by the API layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
    pub roles: HashSet<Role>,
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn is_admin(&self) -> bool {
        self.has(Role::Admin)
    }

    pub fn require(&self, role: Role) -> crate::error::Result<()> {
        if self.has(role) {
            Ok(())
        } else {
            let role = match role {
                Role::Client => "client",
                Role::Miner => "miner",
                Role::Admin => "admin",
            };
            Err(crate::error::Error::forbidden(format!(
                "this action needs the {role} role"
            )))
        }
    }
}

/// Everything the rules need, shared by the HTTP handlers and the background tasks.
#[derive(Clone)]
pub struct Market {
    pub store: Store,
    pub policies: Arc<dyn Policies>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub prices: pricing::PriceRefresher,
    pub facts: facts::FactsCache,
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
            prices: pricing::PriceRefresher::default(),
            facts: facts::FactsCache::default(),
        }
    }

    /// Heartbeats older than this (unix µs) mean the GPU is gone.
    pub fn heartbeat_cutoff(&self, now: i64) -> i64 {
        now - self.config.heartbeat.timeout_seconds as i64 * time::MICROS_PER_SECOND
    }
}
