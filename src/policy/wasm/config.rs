//! `policies/policies.toml`: which module serves each slot, with its limits, operator configuration,
//! sample inputs and (for pricing) the host's guardrails.
//!
//! ```toml
//! [pricing]
//! file = "pricing-demand.wasm"
//! limits = { fuel = 10_000_000, timeout_ms = 50, memory_mib = 16 }
//! config = { max_multiplier = 2.5 }
//! guardrails = { price_cap = 100.0, max_change_percent = 25 }
//! [[pricing.samples]]
//! name = "busy"
//! input = { gpu = { ... }, market = { ... }, request = { ... }, time = { ... } }
//! ```
//!
//! A slot without a table (or a missing file) runs the built-in rules.
//!
//! `[signing] trusted_keys = ["ed25519:<base64>", ...]` makes every module need a signature by one of
//! those keys (see `signing.rs`); the keys travel in each slot's settings, so every check of a slot's
//! candidate sees them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::PolicyError;
use super::guardrails::Guardrails;
use super::limits::Limits;
use super::signing::TrustedKeys;
use super::slot::Slot;

pub const CONFIG_FILE: &str = "policies.toml";

/// Everything `policies.toml` says about one slot. Compared as a whole to decide whether a reload
/// changes the slot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlotSettings {
    /// The module's file name inside the policies directory.
    pub file: String,
    pub limits: Limits,
    /// Operator configuration, passed to every call as key/value strings.
    pub config: Vec<(String, String)>,
    /// Pricing only; defaults elsewhere and unused.
    pub guardrails: Guardrails,
    /// How many earlier versions the slot keeps for rollback, and how many bytes of them.
    pub history: HistoryLimits,
    #[serde(skip)]
    pub samples: Vec<Sample>,
    /// From `[signing]`; the same for every slot. A change of keys is a change of settings, so the
    /// slot's module is verified again.
    #[serde(skip)]
    pub trusted_keys: TrustedKeys,
}

impl SlotSettings {
    /// Settings for checking a module outside any `policies.toml` (CLI `test`, a slot with no table).
    pub fn standalone(file: &str) -> Self {
        Self {
            file: file.to_owned(),
            limits: Limits::default(),
            config: Vec::new(),
            guardrails: Guardrails::default(),
            history: HistoryLimits::default(),
            samples: Vec::new(),
            trusted_keys: TrustedKeys::default(),
        }
    }

    /// The settings `policies_dir/policies.toml` (or `policies_dir` itself, when it is a file) gives
    /// `slot` (limits, config, guardrails, samples), or the published defaults, for the module file
    /// at `path` (CLI helpers, simulation tenants).
    pub fn for_module(
        path: &Path,
        slot: Slot,
        policies_dir: Option<&Path>,
    ) -> Result<Self, PolicyError> {
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("module.wasm");
        let configured = match policies_dir {
            Some(dir) => PoliciesConfig::load_from(dir)?.slots.remove(&slot),
            None => None,
        };
        Ok(match configured {
            Some(settings) => Self {
                file: file.to_owned(),
                ..settings
            },
            None => Self::standalone(file),
        })
    }
}

/// The bounds of a slot's rollback history (`history = { versions = 5, max_mib = 64 }`). Older
/// versions are kept as their file bytes; the oldest go first when either bound is passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryLimits {
    /// Earlier versions kept (0: no rollback).
    pub versions: usize,
    /// Bytes of module files kept, in MiB.
    pub max_mib: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self {
            versions: 5,
            max_mib: 64,
        }
    }
}

impl HistoryLimits {
    pub fn max_bytes(&self) -> usize {
        self.max_mib.saturating_mul(1 << 20)
    }

    fn validate(&self) -> Result<(), String> {
        if self.versions > 100 || self.max_mib > 4096 {
            return Err("versions may be at most 100 and max_mib at most 4096".into());
        }
        Ok(())
    }
}

/// One sample input; its JSON shape is the slot's WIT request record with snake_case field names.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub input: serde_json::Value,
}

/// The parsed file: settings for the slots that have a module configured, and the trusted keys
/// (also copied into each slot's settings).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoliciesConfig {
    pub slots: BTreeMap<Slot, SlotSettings>,
    pub trusted_keys: TrustedKeys,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    pricing: Option<RawSlot>,
    #[serde(rename = "booking-timeout")]
    booking_timeout: Option<RawSlot>,
    #[serde(rename = "review-moderation")]
    review_moderation: Option<RawSlot>,
    signing: Option<RawSigning>,
}

/// `[signing]`. Only the list of keys: there is no switch that accepts unsigned modules while keys
/// are listed (an empty list is the only way to turn signing off).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigning {
    trusted_keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlot {
    file: Option<String>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
    guardrails: Option<Guardrails>,
    #[serde(default)]
    history: HistoryLimits,
    #[serde(default)]
    samples: Vec<RawSample>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSample {
    name: String,
    input: toml::Value,
}

impl PoliciesConfig {
    /// Reads `policies.toml` from `dir`; a missing file means every slot is built in.
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        Self::read(dir.join(CONFIG_FILE))
    }

    /// Like [`load`](Self::load), but `policies` may also name the configuration file itself (a
    /// simulation's `--config my-policies.toml`). Module files are relative to its directory.
    pub fn load_from(policies: &Path) -> Result<Self, PolicyError> {
        if policies.is_file() {
            Self::read(policies.to_owned())
        } else {
            Self::load(policies)
        }
    }

    fn read(path: PathBuf) -> Result<Self, PolicyError> {
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text).map_err(|reason| PolicyError::Config { path, reason }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(PolicyError::io("reading", path, e)),
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let trusted_keys = match raw.signing {
            Some(signing) => {
                TrustedKeys::parse(&signing.trusted_keys).map_err(|e| format!("[signing] {e}"))?
            }
            None => TrustedKeys::default(),
        };
        let mut slots = BTreeMap::new();
        for (slot, section) in [
            (Slot::Pricing, raw.pricing),
            (Slot::BookingTimeout, raw.booking_timeout),
            (Slot::ReviewModeration, raw.review_moderation),
        ] {
            let Some(section) = section else { continue };
            let settings = section
                .into_settings(slot, &trusted_keys)
                .map_err(|e| format!("[{slot}] {e}"))?;
            if let Some(settings) = settings {
                slots.insert(slot, settings);
            }
        }
        Ok(Self {
            slots,
            trusted_keys,
        })
    }
}

impl RawSlot {
    fn into_settings(
        self,
        slot: Slot,
        trusted_keys: &TrustedKeys,
    ) -> Result<Option<SlotSettings>, String> {
        let Some(file) = self.file else {
            return Ok(None);
        };
        check_file_name(&file)?;
        self.limits.validate().map_err(|e| format!("limits: {e}"))?;
        self.history
            .validate()
            .map_err(|e| format!("history: {e}"))?;
        if self.guardrails.is_some() && slot != Slot::Pricing {
            return Err("guardrails apply to the pricing slot only".into());
        }
        let guardrails = self.guardrails.unwrap_or_default();
        guardrails
            .validate()
            .map_err(|e| format!("guardrails: {e}"))?;
        let config = self
            .config
            .into_iter()
            .map(|(key, value)| {
                config_value(&value)
                    .map(|v| (key.clone(), v))
                    .map_err(|e| format!("config.{key}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let samples = self
            .samples
            .into_iter()
            .map(|s| {
                let input = serde_json::to_value(&s.input)
                    .map_err(|e| format!("sample {:?}: {e}", s.name))?;
                Ok(Sample {
                    name: s.name,
                    input,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Some(SlotSettings {
            file,
            limits: self.limits,
            config,
            guardrails,
            history: self.history,
            samples,
            trusted_keys: trusted_keys.clone(),
        }))
    }
}

/// Module files live directly in the policies directory; anything else could make an upload write
/// outside it.
fn check_file_name(file: &str) -> Result<(), String> {
    let plain = !file.is_empty()
        && !file.starts_with('.')
        && !file.contains(['/', '\\'])
        && file != ".."
        && file.ends_with(".wasm");
    if plain {
        Ok(())
    } else {
        Err(format!(
            "file {file:?} must be a plain *.wasm name inside the policies directory"
        ))
    }
}

/// Operator values may be written as strings, numbers, booleans or lists of those (joined by commas).
fn config_value(value: &toml::Value) -> Result<String, String> {
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(config_value)
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        _ => return Err("use a string, number, boolean or list".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_slots_are_built_in_and_limits_default() {
        let config = PoliciesConfig::parse(
            "[pricing]\nfile = \"p.wasm\"\nconfig = { a = 1.5, words = [\"x\", \"y\"] }\n",
        )
        .unwrap();
        assert_eq!(config.slots.len(), 1);
        let pricing = &config.slots[&Slot::Pricing];
        assert_eq!(pricing.limits, Limits::default());
        assert_eq!(
            pricing.config,
            vec![("a".into(), "1.5".into()), ("words".into(), "x,y".into())]
        );
    }

    #[test]
    fn a_file_outside_the_directory_is_refused() {
        let err = PoliciesConfig::parse("[pricing]\nfile = \"../evil.wasm\"\n").unwrap_err();
        assert!(err.contains("plain"), "{err}");
    }

    #[test]
    fn trusted_keys_reach_every_slot_and_a_bad_key_rejects_the_file() {
        let key = crate::policy::wasm::signing::PrivateKey::generate().unwrap();
        let text = format!(
            "[signing]\ntrusted_keys = [\"{}\"]\n[pricing]\nfile = \"p.wasm\"\n\
             [booking-timeout]\nfile = \"t.wasm\"\n",
            key.public_key_line()
        );
        let config = PoliciesConfig::parse(&text).unwrap();
        assert!(config.slots.values().all(|s| !s.trusted_keys.is_empty()));
        let bad = text.replace("ed25519:", "ed25519:x");
        let err = PoliciesConfig::parse(&bad).unwrap_err();
        assert!(err.contains("[signing] trusted_keys[0]"), "{err}");
        // No switch may accept unsigned modules while keys are listed.
        let switch = text.replace("[signing]\n", "[signing]\nrequired = false\n");
        assert!(PoliciesConfig::parse(&switch).is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(
            PoliciesConfig::parse("[pricing]\nfile = \"p.wasm\"\nlimits = { fuul = 1 }\n").is_err()
        );
        assert!(PoliciesConfig::parse("[pricng]\nfile = \"p.wasm\"\n").is_err());
    }
}
