//! The checks every candidate module goes through before it may serve: it is signed by a trusted key
//! when `policies.toml` lists any (checked first: nothing unsigned is even compiled), it compiles,
//! imports nothing outside the allow-list, exports the slot's interface at a compatible contract
//! version with the right types, and answers each sample input validly within its limits.
//!
//! Hot reload, upload, rollback, simulation tenants and the `policy check` CLI all run these same
//! checks.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use chrono::Utc;
use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::cache::{ArtifactCache, Miss};
use super::call::{self, CallCost};
use super::config::SlotSettings;
use super::engine::{budget, engine};
use super::inline::InlineGate;
use super::kinds::SlotKind;
use super::limits::CallState;
use super::module::{PolicyModule, sha256_hex};
use super::slot::Slot;
use super::text::guest_text;

/// Longest detail kept for one check step (escaped: it quotes the module's names and errors).
const MAX_DETAIL: usize = 2048;

/// The WIT package every module must be built against, and the version this host speaks.
pub const CONTRACT_PACKAGE: &str = "gpu-market:policy";
pub const CONTRACT_VERSION: &str = "0.1.0";

/// Imports a module may have. Empty: the host grants no capability at all (no WASI, no clock, no
/// randomness); every fact arrives in the call's input.
pub const ALLOWED_IMPORTS: &[&str] = &[];

/// One line of a check report.
#[derive(Debug, Clone, Serialize)]
pub struct CheckStep {
    pub check: String,
    pub passed: bool,
    pub detail: String,
}

/// What a sample input cost and answered.
#[derive(Debug, Clone, Serialize)]
pub struct SampleRun {
    pub name: String,
    #[serde(flatten)]
    pub cost: CallCost,
    pub output: Result<serde_json::Value, String>,
}

/// The outcome of checking a candidate: the steps taken and, when all passed, the module.
pub struct Checked<K: SlotKind> {
    pub steps: Vec<CheckStep>,
    pub samples: Vec<SampleRun>,
    pub module: Result<Arc<PolicyModule<K>>, String>,
}

/// Verifies `signature` (the content of the module's signature file, if it has one) against the
/// settings' trusted keys, then compiles and checks `bytes` as a module of slot `K` under `settings`.
/// Blocking (compilation takes tens of milliseconds for a Rust module, seconds for an
/// interpreter-based one). With a `cache`, the code this host compiled earlier for the same module is
/// loaded instead of compiled, and a module compiled here that passes every check is stored in it.
pub fn check<K: SlotKind>(
    bytes: Arc<[u8]>,
    signature: Option<Arc<[u8]>>,
    settings: &SlotSettings,
    cache: Option<&ArtifactCache>,
) -> Checked<K> {
    let mut steps = Vec::new();
    let mut samples = Vec::new();
    let verified = settings
        .trusted_keys
        .verify(&settings.file, &bytes, signature.as_deref())
        .map(|verified| verified.to_string());
    let module = record(&mut steps, "signature", verified).and_then(|()| {
        check_steps(
            bytes,
            signature,
            settings,
            true,
            cache,
            &mut steps,
            &mut samples,
        )
    });
    Checked {
        steps,
        samples,
        module,
    }
}

/// Like [`check`] but without the signature and the sample inputs (for `policy test`, which runs its
/// own on a module that never serves).
pub fn load_unchecked_samples<K: SlotKind>(
    bytes: Arc<[u8]>,
    settings: &SlotSettings,
) -> Checked<K> {
    let mut steps = Vec::new();
    let mut samples = Vec::new();
    let module = check_steps(bytes, None, settings, false, None, &mut steps, &mut samples);
    Checked {
        steps,
        samples,
        module,
    }
}

fn record(
    steps: &mut Vec<CheckStep>,
    check: &str,
    result: Result<String, String>,
) -> Result<(), String> {
    let result = result.map_err(|e| guest_text(&e, MAX_DETAIL));
    let (passed, detail) = match &result {
        Ok(d) => (true, d.clone()),
        Err(e) => (false, e.clone()),
    };
    steps.push(CheckStep {
        check: check.to_owned(),
        passed,
        detail,
    });
    result.map(drop)
}

fn check_steps<K: SlotKind>(
    bytes: Arc<[u8]>,
    signature: Option<Arc<[u8]>>,
    settings: &SlotSettings,
    run_samples: bool,
    cache: Option<&ArtifactCache>,
    steps: &mut Vec<CheckStep>,
    samples: &mut Vec<SampleRun>,
) -> Result<Arc<PolicyModule<K>>, String> {
    let slot = K::SLOT;
    let engine = engine(slot).map_err(|e| e.to_string())?;
    let sha256 = sha256_hex(&bytes);

    let started = Instant::now();
    let cached = cache.map(|cache| cache.load(engine, slot, &sha256));
    let from_cache = matches!(cached, Some(Ok(_)));
    let (component, how) = match cached {
        Some(Ok(component)) => (Ok(component), "loaded from this host's compile cache"),
        Some(Err(Miss::Rejected(_))) => (
            compile(engine, slot, &bytes),
            "compiled (cached code rejected)",
        ),
        Some(Err(Miss::Absent)) | None => (compile(engine, slot, &bytes), "compiled"),
    };
    let detail = format!(
        "{} bytes {how} in {} ms",
        bytes.len(),
        started.elapsed().as_millis()
    );
    record(
        steps,
        "compiles",
        component.as_ref().map(|_| detail).map_err(Clone::clone),
    )?;
    let component = component?;
    let image = component.image_range();
    let compiled_bytes = (image.end as usize).saturating_sub(image.start as usize);
    let component_type = component.component_type();

    let forbidden: Vec<&str> = component_type
        .imports(engine)
        .map(|(name, _)| name)
        .filter(|name| !ALLOWED_IMPORTS.contains(name))
        .collect();
    record(
        steps,
        "imports nothing the host does not grant",
        if forbidden.is_empty() {
            Ok("no imports".into())
        } else {
            Err(format!(
                "imports {}; the host grants no capabilities to policies",
                forbidden.join(", ")
            ))
        },
    )?;

    let exports: Vec<&str> = component_type
        .exports(engine)
        .map(|(name, _)| name)
        .collect();
    let export_name = contract_export(slot, &exports);
    record(
        steps,
        "exports the slot's interface at a compatible contract version",
        export_name.clone(),
    )?;
    let export_name = export_name?;

    let pre = Linker::<CallState>::new(engine)
        .instantiate_pre(&component)
        .map_err(|e| format!("cannot be instantiated without imports: {e:#}"))
        .and_then(|instance_pre| {
            K::typecheck(&instance_pre, &export_name)
                .and_then(|()| K::pre(instance_pre))
                .map_err(|e| format!("{export_name} does not match the contract's types: {e:#}"))
        });
    record(
        steps,
        "matches the contract's types",
        pre.as_ref()
            .map(|_| export_name.clone())
            .map_err(Clone::clone),
    )?;
    let pre = pre?;
    record(
        steps,
        "instantiates within the slot's budget",
        fits_budget::<K>(&pre, settings),
    )?;

    let module = PolicyModule {
        file: settings.file.clone(),
        sha256,
        loaded_at: Utc::now(),
        bytes,
        signature,
        compiled_bytes,
        pre,
        inline: InlineGate::default(),
        series: OnceLock::new(),
    };
    if run_samples {
        check_samples(&module, settings, steps, samples)?;
    }
    if let Some(cache) = cache.filter(|_| !from_cache)
        && let Err(e) = cache.store(engine, slot, &module.sha256, &component)
    {
        // Only a later load is slower; the module itself passed.
        tracing::warn!(%slot, "compiled policy module not cached: {e}");
    }
    Ok(Arc::new(module))
}

/// Compiles a candidate. With the pooling allocator, compiling already refuses a component that
/// needs more core instances, memories or tables per instance than the slot's pool allows.
fn compile(engine: &Engine, slot: Slot, bytes: &[u8]) -> Result<Component, String> {
    Component::new(engine, bytes).map_err(|e| {
        let e = format!("{e:#}");
        if e.contains("pooling allocator") {
            format!(
                "needs more than the {slot} slot's budget ({}): {e}",
                budget_summary(slot)
            )
        } else {
            format!("not a valid WebAssembly component: {e}")
        }
    })
}

/// Instantiates the module once under the slot's limits: the pool refuses a component that needs more
/// core instances, memories or tables per call than the slot's budget, so such a module is rejected
/// here, before it could take room from the slot's other calls.
fn fits_budget<K: SlotKind>(pre: &K::Pre, settings: &SlotSettings) -> Result<String, String> {
    let summary = budget_summary(K::SLOT);
    let limits = &settings.limits;
    let report = call::run(
        K::SLOT,
        limits,
        limits.fuel,
        limits.max_output_bytes,
        |store| K::instantiate(pre, store).map(drop),
    );
    match report.result {
        Ok(()) => Ok(summary),
        Err(failure) => Err(format!(
            "cannot be instantiated within the {} slot's budget ({summary}): {}",
            K::SLOT,
            failure.message
        )),
    }
}

fn budget_summary(slot: Slot) -> String {
    let b = budget(slot);
    format!(
        "at most {} core instances, {} memories and {} tables per call, {} calls at once",
        b.core_instances, b.memories, b.tables, b.concurrent_calls
    )
}

/// Runs the slot's sample inputs from `settings` (or the built-in sample) on `module`: each must answer
/// validly within the limits. The last step of [`check`]; also run alone when only the settings of an
/// already checked module change (a simulation sweeping a config key).
pub fn check_samples<K: SlotKind>(
    module: &PolicyModule<K>,
    settings: &SlotSettings,
    steps: &mut Vec<CheckStep>,
    samples: &mut Vec<SampleRun>,
) -> Result<(), String> {
    let mut sample_list: Vec<(String, serde_json::Value)> = settings
        .samples
        .iter()
        .map(|s| (s.name.clone(), s.input.clone()))
        .collect();
    if sample_list.is_empty() {
        sample_list.push(("built-in sample".into(), K::default_sample()));
    }
    for (name, input) in sample_list {
        let check_name = format!("sample {name:?} answers validly within limits");
        match module.run_json(settings, &input) {
            Err(bad) => {
                record(
                    steps,
                    &check_name,
                    Err(format!(
                        "the sample does not match the {} contract: {}",
                        K::SLOT,
                        bad.0
                    )),
                )?;
            }
            Ok((output, cost)) => {
                let output = output.map_err(|f| f.to_string());
                samples.push(SampleRun {
                    name: name.clone(),
                    cost,
                    output: output.clone(),
                });
                let detail = format!(
                    "fuel {}, {} µs, memory {} KiB",
                    cost.fuel_used,
                    cost.elapsed.as_micros(),
                    cost.peak_memory_bytes / 1024
                );
                record(
                    steps,
                    &check_name,
                    output
                        .map(|_| detail)
                        .map_err(|e| format!("sample {name:?}: {e}")),
                )?;
            }
        }
    }
    Ok(())
}

/// Finds the slot's interface among the exports and checks its contract version.
fn contract_export(slot: Slot, exports: &[&str]) -> Result<String, String> {
    let prefix = format!("{CONTRACT_PACKAGE}/{}", slot.interface());
    let expected = format!("{prefix}@{CONTRACT_VERSION}");
    let Some(found) = exports
        .iter()
        .find(|e| e.split('@').next() == Some(prefix.as_str()))
    else {
        return Err(format!(
            "does not export {expected} (exports: {})",
            list_or_none(exports)
        ));
    };
    let version = found.split_once('@').map(|(_, v)| v).unwrap_or("");
    if !compatible(version, CONTRACT_VERSION) {
        return Err(format!(
            "built for contract {CONTRACT_PACKAGE}@{} but this host speaks @{CONTRACT_VERSION}; \
             rebuild the module against plugins/wit of this version",
            if version.is_empty() {
                "(unversioned)"
            } else {
                version
            }
        ));
    }
    Ok(found.to_string())
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// Semver compatibility: same major version, and for 0.x the same minor version.
fn compatible(found: &str, ours: &str) -> bool {
    let parts = |v: &str| -> Option<(u64, u64)> {
        let mut it = v.split(['.', '-', '+']);
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    };
    match (parts(found), parts(ours)) {
        (Some((0, a)), Some((0, b))) => a == b,
        (Some((a, _)), Some((b, _))) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_versions_follow_semver() {
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.3", "0.1.0"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(!compatible("1.0.0", "0.1.0"));
        assert!(!compatible("", "0.1.0"));
    }

    #[test]
    fn another_major_version_is_named_in_the_error() {
        let err = contract_export(Slot::Pricing, &["gpu-market:policy/pricing@1.0.0"]).unwrap_err();
        assert!(err.contains("@1.0.0") && err.contains("@0.1.0"), "{err}");
        let err = contract_export(Slot::Pricing, &["other:thing/x"]).unwrap_err();
        assert!(
            err.contains("does not export gpu-market:policy/pricing@0.1.0"),
            "{err}"
        );
    }
}
