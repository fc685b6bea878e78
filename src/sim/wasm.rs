//! WebAssembly policies in the simulator: one tenant of the policy runtime per run.
//!
//! TEMPORARY: waits for `policy::wasm::tenant` (branch policy-slots).

use std::path::Path;
use std::sync::Arc;

use super::strategy::{PricingFactory, TimeoutFactory};

/// A pricing module, checked once (as the hot reload checks it), ready to make one tenant per run.
pub struct PricingModule {
    sha256: String,
}

impl PricingModule {
    pub fn load(path: &Path, _config: Option<&Path>) -> Result<Self, String> {
        Err(format!(
            "{}: WebAssembly policies are not wired in yet",
            path.display()
        ))
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// A factory whose tenants see `settings` over the config's pricing keys.
    pub fn with_settings(
        &self,
        _settings: &[(String, String)],
    ) -> Result<Arc<dyn PricingFactory>, String> {
        Err("not wired in yet".into())
    }
}

/// The `[booking-timeout]` slot of a policies.toml, or the built-in rule when it has none.
pub fn timeout_from_config(_config: &Path) -> Result<(Arc<dyn TimeoutFactory>, String), String> {
    Ok((Arc::new(super::strategy::Builtin), "builtin".to_owned()))
}
