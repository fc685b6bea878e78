//! [`PolicyModule`]: one checked version of a slot's module, with its typed `Pre`, and the ways to call
//! it on a fresh instance (the live runtime's path, and the JSON runs of samples and `policy test`).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::call::{self, CallCost, CallReport, Failure, FailureKind};
use super::config::SlotSettings;
use super::error::PolicyError;
use super::inline::{Attempt, InlineGate};
use super::kinds::{SlotKind, batch_answers, validated};
use super::metrics::VersionSeries;

/// A compiled, checked module version of slot `K`. Immutable; replaced as a whole on reload. Only the
/// candidate checks (`checks.rs`) make one.
pub struct PolicyModule<K: SlotKind> {
    pub file: String,
    pub sha256: String,
    pub loaded_at: DateTime<Utc>,
    /// Kept so that a rollback can write the version back into the policies directory.
    pub bytes: Arc<[u8]>,
    /// The signature file it was accepted with (None when no trusted key was configured and it had
    /// none), kept with the bytes so that a rollback is verified again and restores it beside them.
    pub signature: Option<Arc<[u8]>>,
    /// Size of the compiled code the host holds for this version.
    pub compiled_bytes: usize,
    pub pre: K::Pre,
    /// Whether this version's decisions currently run on the calling thread (see `inline.rs`).
    pub inline: InlineGate,
    /// This version's call metrics, looked up at its first call (see [`VersionSeries`]).
    pub series: OnceLock<VersionSeries>,
}

/// Why a JSON input could not be run.
#[derive(Debug)]
pub struct BadInput(pub String);

impl<K: SlotKind> PolicyModule<K> {
    /// The first 12 hex digits of the module's sha256: the `version` metric label.
    pub fn version(&self) -> &str {
        &self.sha256[..12]
    }

    /// `<file>@<version>`, as reported in each decision's source.
    pub fn label(&self) -> String {
        format!("{}@{}", self.file, self.version())
    }

    /// The same compiled version under another file name: a candidate promoted to serve the slot.
    pub fn relabeled(&self, file: &str) -> Self {
        Self {
            file: file.to_owned(),
            sha256: self.sha256.clone(),
            loaded_at: Utc::now(),
            bytes: self.bytes.clone(),
            signature: self.signature.clone(),
            compiled_bytes: self.compiled_bytes,
            pre: self.pre.clone(),
            inline: InlineGate::default(),
            series: OnceLock::new(),
        }
    }

    /// One decision on a fresh instance in a fresh store under the slot's limits. Blocking.
    pub fn call(
        &self,
        settings: &SlotSettings,
        input: &K::WitInput,
    ) -> CallReport<Result<K::WitAnswer, String>> {
        self.call_within(settings, input, Attempt::full(&settings.limits))
    }

    /// [`call`](Self::call) with `attempt`'s fuel and deadline (at most the slot's).
    pub fn call_within(
        &self,
        settings: &SlotSettings,
        input: &K::WitInput,
        attempt: Attempt,
    ) -> CallReport<Result<K::WitAnswer, String>> {
        let limits = &settings.limits;
        let answer_bytes = call::answer_budget::<K::WitAnswer>(limits, 0);
        let (fuel, timeout) = (attempt.fuel, attempt.timeout);
        call::run_within(K::SLOT, limits, fuel, timeout, answer_bytes, |store| {
            let bindings = K::instantiate(&self.pre, &mut *store)?;
            K::call(&bindings, store, &settings.config, input)
        })
    }

    /// Many decisions in one guest call on a fresh instance, with a decision's fuel per input.
    /// Blocking.
    pub fn call_batch(
        &self,
        settings: &SlotSettings,
        inputs: &[K::WitInput],
    ) -> CallReport<Vec<Result<K::WitAnswer, String>>> {
        let limits = &settings.limits;
        let fuel = limits.fuel.saturating_mul(inputs.len().max(1) as u64);
        let answer_bytes =
            call::answer_budget::<Result<K::WitAnswer, String>>(limits, inputs.len().max(1));
        let report = call::run(K::SLOT, limits, fuel, answer_bytes, |store| {
            let bindings = K::instantiate(&self.pre, &mut *store)?;
            K::call_batch(&bindings, store, &settings.config, inputs)
        });
        CallReport {
            result: report
                .result
                .and_then(|answers| batch_answers(answers, inputs.len())),
            cost: report.cost,
        }
    }

    /// Runs one decision from a JSON input shaped like the slot's WIT request record (snake_case
    /// field names) and returns the checked answer as JSON. Used by sample checks and `policy test`;
    /// guardrails are not applied.
    pub fn run_json(
        &self,
        settings: &SlotSettings,
        input: &serde_json::Value,
    ) -> Result<(Result<serde_json::Value, Failure>, CallCost), BadInput> {
        let input: K::WitInput =
            serde_json::from_value(input.clone()).map_err(|e| BadInput(e.to_string()))?;
        let limits = &settings.limits;
        if let Some(failure) = call::input_too_large(K::input_size(&input), limits) {
            return Ok((Err(failure), CallCost::default()));
        }
        let report = self.call(settings, &input);
        let output = report
            .result
            .and_then(|raw| validated::<K>(raw, limits))
            .and_then(|answer| {
                serde_json::to_value(answer)
                    .map_err(|e| Failure::new(FailureKind::Host, e.to_string()))
            });
        Ok((output, report.cost))
    }
}

/// Reads a module file.
pub fn read_module(path: &Path) -> Result<Arc<[u8]>, PolicyError> {
    std::fs::read(path)
        .map(Into::into)
        .map_err(|e| PolicyError::io("reading", path, e))
}

/// The version id used in decision sources and metric labels: the first 12 hex digits of the sha256.
pub fn sha256_prefix(bytes: &[u8]) -> String {
    sha256_hex(bytes)[..12].to_owned()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
