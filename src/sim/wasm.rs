//! WebAssembly policies in the simulator: each run is one tenant of the policy runtime
//! (`policy::wasm::Tenant`), so a module gets the server's checks, limits, contract checks, guardrails
//! and fallbacks. A tenant keeps its instance between decisions; a module whose answers depend on
//! earlier calls (flagged by the stateless check) is run with a fresh instance per decision instead, as
//! the server runs it, so its figures stay the server's.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::policy::wasm::{CONFIG_FILE, PricingTenant, TimeoutStrategy as TimeoutSlotStrategy};
use crate::policy::{PricingRequest, TimeoutDecision, TimeoutRequest};

use super::strategy::{Priced, PricingFactory, PricingStrategy, TimeoutFactory, TimeoutStrategy};

/// The directory whose policies.toml the runtime reads, for a `--config` file.
fn policies_dir(config: Option<&Path>) -> Result<Option<&Path>, String> {
    let Some(config) = config else {
        return Ok(None);
    };
    if config.file_name().and_then(|n| n.to_str()) != Some(CONFIG_FILE) {
        return Err(format!(
            "--config {}: the policy runtime reads a file named {CONFIG_FILE} (with the modules it names beside it)",
            config.display()
        ));
    }
    Ok(Some(
        config
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    ))
}

/// A pricing module, checked once (as the hot reload checks it), ready to make one tenant per run.
pub struct PricingModule {
    tenant: Mutex<PricingTenant>,
    sha256: String,
    /// Why the module must get a fresh instance per decision, if it must.
    stateful: Option<String>,
}

impl PricingModule {
    pub fn load(path: &Path, config: Option<&Path>) -> Result<Self, String> {
        let dir = policies_dir(config)?;
        let mut tenant = PricingTenant::load(path, dir).map_err(|e| e.to_string())?;
        let stateful = tenant.check_stateless().err();
        tenant.release();
        Ok(Self {
            sha256: tenant.sha256().to_owned(),
            tenant: Mutex::new(tenant),
            stateful,
        })
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Why this module's answers depend on earlier calls, when they do.
    pub fn stateful(&self) -> Option<&str> {
        self.stateful.as_deref()
    }

    /// A factory whose tenants see `settings` over the config's pricing keys (checked again, as a
    /// reload of changed settings would be).
    pub fn with_settings(
        &self,
        settings: &[(String, String)],
    ) -> Result<Arc<dyn PricingFactory>, String> {
        let template = self.tenant.lock().map_err(|_| "tenant lock poisoned")?;
        let tenant = if settings.is_empty() {
            template.fork()
        } else {
            template.with_config(settings).map_err(|e| e.to_string())?
        };
        Ok(Arc::new(TenantFactory {
            template: Mutex::new(tenant),
            fresh_per_decision: self.stateful.is_some(),
        }))
    }
}

struct TenantFactory {
    template: Mutex<PricingTenant>,
    fresh_per_decision: bool,
}

impl PricingFactory for TenantFactory {
    fn build(&self) -> Result<Box<dyn PricingStrategy>, String> {
        let tenant = self
            .template
            .lock()
            .map_err(|_| "tenant lock poisoned")?
            .fork();
        Ok(Box::new(TenantStrategy {
            tenant,
            fresh_per_decision: self.fresh_per_decision,
        }))
    }
}

struct TenantStrategy {
    tenant: PricingTenant,
    fresh_per_decision: bool,
}

impl PricingStrategy for TenantStrategy {
    fn quote(&mut self, request: &PricingRequest) -> Priced {
        let answer = self.tenant.quote(request);
        if self.fresh_per_decision {
            self.tenant.release();
        }
        Priced {
            quote: answer.output,
            fuel: answer.fuel,
        }
    }

    /// The candidates of one arrival go through `quote-batch`, as the server refreshes the prices the
    /// catalogue shows.
    fn quote_all(&mut self, requests: &[PricingRequest], out: &mut Vec<Priced>) {
        if requests.len() == 1 || self.fresh_per_decision {
            out.extend(requests.iter().map(|r| self.quote(r)));
            return;
        }
        out.extend(
            self.tenant
                .quote_batch(requests)
                .into_iter()
                .map(|answer| Priced {
                    quote: answer.output,
                    fuel: answer.fuel,
                }),
        );
    }
}

/// The `[booking-timeout]` slot of the config's policies.toml (its module, or the built-in rule when it
/// configures none), and its name.
pub fn timeout_from_config(config: &Path) -> Result<(Arc<dyn TimeoutFactory>, String), String> {
    let Some(dir) = policies_dir(Some(config))? else {
        return Err("no config".into());
    };
    let mut strategy = TimeoutSlotStrategy::configured(dir).map_err(|e| e.to_string())?;
    let stateful = strategy.check_stateless().is_err();
    let name = strategy.name().to_owned();
    Ok((
        Arc::new(TimeoutModule {
            template: Mutex::new(strategy),
            fresh_per_decision: stateful,
        }),
        name,
    ))
}

struct TimeoutModule {
    template: Mutex<TimeoutSlotStrategy>,
    fresh_per_decision: bool,
}

impl TimeoutFactory for TimeoutModule {
    fn build(&self) -> Result<Box<dyn TimeoutStrategy>, String> {
        let strategy = self
            .template
            .lock()
            .map_err(|_| "tenant lock poisoned")?
            .fork();
        Ok(Box::new(TimeoutRun {
            strategy,
            fresh_per_decision: self.fresh_per_decision,
        }))
    }
}

struct TimeoutRun {
    strategy: TimeoutSlotStrategy,
    fresh_per_decision: bool,
}

impl TimeoutStrategy for TimeoutRun {
    fn decide(&mut self, request: &TimeoutRequest) -> (TimeoutDecision, u64) {
        let answer = self.strategy.decide(request);
        if self.fresh_per_decision
            && let crate::policy::wasm::Strategy::Wasm(tenant) = &mut self.strategy
        {
            tenant.release();
        }
        (answer.output, answer.fuel)
    }
}
