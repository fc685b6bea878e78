//! The CLI helpers behind `gpu-market policy check` and `gpu-market policy test`. Both are blocking
//! (they compile a module); from async code call them inside `spawn_blocking`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::config::{PoliciesConfig, SlotSettings};
use super::module::{self, CheckStep, SampleRun};
use super::{Limits, PolicyError, Slot};

/// What `policy check` found: each check in order (stopping at the first failure), and the fuel, time
/// and memory each sample input used.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub slot: Slot,
    pub path: PathBuf,
    pub sha256: String,
    pub limits: Limits,
    pub steps: Vec<CheckStep>,
    pub samples: Vec<SampleRun>,
    /// True when the module would be accepted by a hot reload.
    pub passed: bool,
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.limits;
        writeln!(f, "{} as the {} policy", self.path.display(), self.slot)?;
        writeln!(f, "  sha256 {}", self.sha256)?;
        writeln!(
            f,
            "  limits: fuel {}, deadline {} ms, memory {} MiB, input {} B, output {} B",
            l.fuel, l.timeout_ms, l.memory_mib, l.max_input_bytes, l.max_output_bytes
        )?;
        for step in &self.steps {
            writeln!(
                f,
                "  [{}] {}: {}",
                if step.passed { "ok" } else { "FAIL" },
                step.check,
                step.detail
            )?;
        }
        for sample in &self.samples {
            if let Ok(output) = &sample.output {
                writeln!(f, "  sample {:?} answered {output}", sample.name)?;
            }
        }
        write!(
            f,
            "{}",
            if self.passed {
                "PASSED: a hot reload would accept this module"
            } else {
                "REJECTED"
            }
        )
    }
}

pub(super) fn settings_for(
    path: &Path,
    slot: Slot,
    policies_dir: Option<&Path>,
) -> Result<SlotSettings, PolicyError> {
    let file = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("module.wasm");
    let configured = match policies_dir {
        Some(dir) => PoliciesConfig::load(dir)?.slots.remove(&slot),
        None => None,
    };
    Ok(match configured {
        Some(settings) => SlotSettings {
            file: file.to_owned(),
            ..settings
        },
        None => SlotSettings::standalone(file),
    })
}

pub(super) fn read(path: &Path) -> Result<Arc<[u8]>, PolicyError> {
    std::fs::read(path)
        .map(Into::into)
        .map_err(|e| PolicyError::io("reading", path, e))
}

/// Checks `path` as the `slot` module exactly as a hot reload would, with the limits, configuration
/// and sample inputs `policies_dir/policies.toml` gives the slot (the published defaults and a
/// built-in sample when it gives none). Module problems are in the report (`passed == false`); an
/// `Err` means the file or `policies.toml` could not be read.
pub fn check_module(
    path: &Path,
    slot: Slot,
    policies_dir: &Path,
) -> Result<CheckReport, PolicyError> {
    let settings = settings_for(path, slot, Some(policies_dir))?;
    let bytes = read(path)?;
    let sha256 = module::sha256_hex(&bytes);
    let checked = module::check(slot, bytes, &settings);
    Ok(CheckReport {
        slot,
        path: path.to_owned(),
        sha256,
        limits: settings.limits,
        passed: checked.module.is_ok(),
        steps: checked.steps,
        samples: checked.samples,
    })
}

/// Runs one decision of the module at `path` on `input_json` (the slot's WIT request record as JSON,
/// snake_case field names, e.g. `{"gpu": {...}, "market": {...}, "request": {...}, "time": {...}}` for
/// pricing), under the limits and configuration `policies_dir` gives the slot, or the defaults.
///
/// Returns `{"policy", "output" | "failure", "fuel_used", "elapsed_us", "peak_memory_bytes"}`; a call
/// that fails within its limits is reported in `failure`, not as an `Err`. Guardrails are not applied.
pub fn test_module(
    path: &Path,
    slot: Slot,
    input_json: &str,
    policies_dir: Option<&Path>,
) -> Result<serde_json::Value, PolicyError> {
    let settings = settings_for(path, slot, policies_dir)?;
    let input: serde_json::Value =
        serde_json::from_str(input_json).map_err(|e| PolicyError::InvalidInput {
            slot,
            reason: format!("not JSON: {e}"),
        })?;
    let loaded = module::load_unchecked_samples(slot, read(path)?, &settings);
    let module = loaded
        .module
        .map_err(|reason| PolicyError::InvalidModule { slot, reason })?;
    let (result, cost) =
        module
            .pre
            .run_json(&settings, &input)
            .map_err(|bad| PolicyError::InvalidInput {
                slot,
                reason: bad.0,
            })?;
    let mut out = serde_json::json!({
        "policy": module.label(),
        "fuel_used": cost.fuel_used,
        "elapsed_us": cost.elapsed.as_micros() as u64,
        "peak_memory_bytes": cost.peak_memory_bytes,
    });
    match result {
        Ok(output) => out["output"] = output,
        Err(failure) => {
            out["failure"] = serde_json::json!({ "kind": failure.kind, "message": failure.message })
        }
    }
    Ok(out)
}
