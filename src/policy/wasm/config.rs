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

/// The parsed file: settings for the slots that have a module configured, and their candidates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoliciesConfig {
    pub slots: BTreeMap<Slot, SlotSettings>,
    pub candidates: BTreeMap<Slot, SlotCandidates>,
    /// Also copied into each slot's settings (and its candidates').
    pub trusted_keys: TrustedKeys,
}

/// The modules a slot tries before one serves everything: a shadow that sees every live input and
/// only has its answers logged, and a canary that answers a share of live decisions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlotCandidates {
    pub shadow: Option<ShadowSettings>,
    pub canary: Option<CanarySettings>,
}

/// `[pricing.shadow] file = "candidate.wasm"`: the slot's settings with the candidate's file and,
/// optionally, limits of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowSettings {
    pub settings: SlotSettings,
    /// The share of one core the shadow's calls may take, in percent: a shadow that loops to its
    /// deadline is paced to this, and inputs arriving meanwhile are skipped (and counted).
    pub cpu_percent: f64,
}

/// `[pricing.canary] file = "candidate.wasm" percent = 10`: the candidate answers `percent` of live
/// decisions under the slot's own settings (limits, config, guardrails, samples), sticky by the
/// slot's routing key, until its failure rate passes `stop_failure_rate` after `stop_min_calls`.
#[derive(Debug, Clone, PartialEq)]
pub struct CanarySettings {
    pub settings: SlotSettings,
    pub percent: f64,
    pub stop_failure_rate: f64,
    pub stop_min_calls: u64,
}

/// A candidate's role, as `policies.toml` and the admin API name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateRole {
    Shadow,
    Canary,
}

impl CandidateRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shadow => "shadow",
            Self::Canary => "canary",
        }
    }
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
    shadow: Option<RawShadow>,
    canary: Option<RawCanary>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShadow {
    file: String,
    limits: Option<Limits>,
    #[serde(default = "default_shadow_cpu_percent")]
    cpu_percent: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCanary {
    file: String,
    percent: f64,
    #[serde(default = "default_stop_failure_rate")]
    stop_failure_rate: f64,
    #[serde(default = "default_stop_min_calls")]
    stop_min_calls: u64,
}

fn default_shadow_cpu_percent() -> f64 {
    10.0
}

fn default_stop_failure_rate() -> f64 {
    0.05
}

fn default_stop_min_calls() -> u64 {
    20
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
        let mut candidates = BTreeMap::new();
        for (slot, section) in [
            (Slot::Pricing, raw.pricing),
            (Slot::BookingTimeout, raw.booking_timeout),
            (Slot::ReviewModeration, raw.review_moderation),
        ] {
            let Some(section) = section else { continue };
            let parsed = section
                .into_settings(slot, &trusted_keys)
                .map_err(|e| format!("[{slot}] {e}"))?;
            if let Some((settings, tried)) = parsed {
                slots.insert(slot, settings);
                if tried != SlotCandidates::default() {
                    candidates.insert(slot, tried);
                }
            }
        }
        Ok(Self {
            slots,
            candidates,
            trusted_keys,
        })
    }
}

impl RawSlot {
    fn into_settings(
        self,
        slot: Slot,
        trusted_keys: &TrustedKeys,
    ) -> Result<Option<(SlotSettings, SlotCandidates)>, String> {
        let Some(file) = self.file else {
            if self.shadow.is_some() || self.canary.is_some() {
                return Err("a shadow or canary needs the slot's own `file` too".into());
            }
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
        let settings = SlotSettings {
            file,
            limits: self.limits,
            config,
            guardrails,
            history: self.history,
            samples,
            trusted_keys: trusted_keys.clone(),
        };
        let candidates = SlotCandidates {
            shadow: self
                .shadow
                .map(|raw| raw.into_settings(&settings))
                .transpose()
                .map_err(|e| format!("shadow: {e}"))?,
            canary: self
                .canary
                .map(|raw| raw.into_settings(&settings))
                .transpose()
                .map_err(|e| format!("canary: {e}"))?,
        };
        Ok(Some((settings, candidates)))
    }
}

impl RawShadow {
    fn into_settings(self, slot: &SlotSettings) -> Result<ShadowSettings, String> {
        check_file_name(&self.file)?;
        let limits = self.limits.unwrap_or(slot.limits);
        limits.validate().map_err(|e| format!("limits: {e}"))?;
        if !(self.cpu_percent > 0.0 && self.cpu_percent <= 100.0) {
            return Err(format!(
                "cpu_percent {} must be above 0 and at most 100",
                self.cpu_percent
            ));
        }
        Ok(ShadowSettings {
            settings: SlotSettings {
                file: self.file,
                limits,
                ..slot.clone()
            },
            cpu_percent: self.cpu_percent,
        })
    }
}

impl RawCanary {
    fn into_settings(self, slot: &SlotSettings) -> Result<CanarySettings, String> {
        check_file_name(&self.file)?;
        if !(0.0..=100.0).contains(&self.percent) {
            return Err(format!("percent {} must be within 0-100", self.percent));
        }
        if !(0.0..=1.0).contains(&self.stop_failure_rate) {
            return Err(format!(
                "stop_failure_rate {} must be within 0-1",
                self.stop_failure_rate
            ));
        }
        Ok(CanarySettings {
            settings: SlotSettings {
                file: self.file,
                ..slot.clone()
            },
            percent: self.percent,
            stop_failure_rate: self.stop_failure_rate,
            stop_min_calls: self.stop_min_calls.max(1),
        })
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
    fn candidates_take_the_slot_settings_with_their_own_file() {
        let config = PoliciesConfig::parse(
            "[pricing]\nfile = \"p.wasm\"\nconfig = { a = 1 }\n\
             [pricing.shadow]\nfile = \"s.wasm\"\nlimits = { timeout_ms = 5 }\n\
             [pricing.canary]\nfile = \"c.wasm\"\npercent = 10\n",
        )
        .unwrap();
        let tried = &config.candidates[&Slot::Pricing];
        let shadow = tried.shadow.as_ref().unwrap();
        assert_eq!(shadow.settings.file, "s.wasm");
        assert_eq!(shadow.settings.limits.timeout_ms, 5);
        assert_eq!(shadow.settings.config, vec![("a".into(), "1".into())]);
        let canary = tried.canary.as_ref().unwrap();
        assert_eq!(
            (canary.settings.file.as_str(), canary.percent),
            ("c.wasm", 10.0)
        );
        assert_eq!(canary.settings.limits, Limits::default());
        for bad in [
            "[pricing]\nfile = \"p.wasm\"\n[pricing.canary]\nfile = \"c.wasm\"\npercent = 101\n",
            "[pricing]\nfile = \"p.wasm\"\n[pricing.shadow]\nfile = \"../s.wasm\"\n",
            "[pricing.shadow]\nfile = \"s.wasm\"\n",
        ] {
            assert!(PoliciesConfig::parse(bad).is_err(), "{bad}");
        }
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
