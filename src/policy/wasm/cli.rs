//! The CLI helpers behind `gpu-market policy check` and `gpu-market policy test`: the slot is chosen
//! at run time, so they go through the [`SlotAdmin`](super::admin::SlotAdmin) view. Both are blocking
//! (they compile a module); from async code call them inside `spawn_blocking`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::admin::Cells;
use super::checks::{CheckStep, SampleRun};
use super::config::SlotSettings;
use super::error::PolicyError;
use super::limits::Limits;
use super::module::{read_module, sha256_hex};
use super::signing::read_signature_beside;
use super::slot::Slot;

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

/// Checks `path` as the `slot` module exactly as a hot reload would, with the limits, configuration
/// and sample inputs `policies_dir/policies.toml` gives the slot (the published defaults and a
/// built-in sample when it gives none). When that `policies.toml` lists trusted keys, the signature
/// file beside `path` must verify, as on the server. Module problems are in the report (`passed == false`); an
/// `Err` means the file or `policies.toml` could not be read.
pub fn check_module(
    path: &Path,
    slot: Slot,
    policies_dir: &Path,
) -> Result<CheckReport, PolicyError> {
    let settings = SlotSettings::for_module(path, slot, Some(policies_dir))?;
    let bytes = read_module(path)?;
    let sha256 = sha256_hex(&bytes);
    let signature = read_signature_beside(path)?.map(Into::into);
    let checked = Cells::default()
        .admin(slot)
        .check(bytes, signature, &settings);
    Ok(CheckReport {
        slot,
        path: path.to_owned(),
        sha256,
        limits: settings.limits,
        passed: checked.passed,
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
    let settings = SlotSettings::for_module(path, slot, policies_dir)?;
    let input: serde_json::Value =
        serde_json::from_str(input_json).map_err(|e| PolicyError::InvalidInput {
            slot,
            reason: format!("not JSON: {e}"),
        })?;
    Cells::default()
        .admin(slot)
        .test_json(read_module(path)?, &settings, &input)
}
