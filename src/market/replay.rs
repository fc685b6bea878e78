//! `gpu-market policy replay` and `policy fixtures`: a candidate module run over the decision log's
//! inputs without touching live state (through the same checks, limits, guardrails and fallbacks as
//! the server, on a fresh instance per decision), and logged inputs turned into `policies.toml`
//! samples so that real cases become load-time checks.

use std::path::Path;

use serde::Serialize;

use super::comparison::{self, Comparison};
use crate::domain::{Outcome, Timestamp};
use crate::error::{Error, Result};
use crate::policy::wasm::{ModerationSlot, PricingSlot, Slot, SlotKind, Tenant, TimeoutSlot};
use crate::store::Store;
use crate::store::decisions::{self, Compared, Replayable};

/// What `policy replay` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub slot: Slot,
    /// The replayed module: `<file>@<sha256 prefix>`.
    pub policy: String,
    pub sha256: String,
    #[serde(serialize_with = "rfc3339")]
    pub since: Timestamp,
    /// Logged inputs that could not be read back (written by another version of gpu-market).
    pub unreadable_inputs: u64,
    pub comparison: Comparison,
}

fn rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_string())
}

/// Runs `module` (checked under the slot's settings from `policies`, like a reload) over the oldest
/// `limit` served decisions of `slot` since `since`, in order, and compares its answers with the
/// logged ones. Deterministic: the inputs carry their time, and nothing else is read.
pub async fn replay(
    store: &Store,
    slot: Slot,
    module: &Path,
    policies: Option<&Path>,
    since: Timestamp,
    limit: u32,
) -> Result<ReplayReport> {
    let rows = decisions::replayable(store, slot.as_str(), since, limit).await?;
    let (module, policies) = (module.to_owned(), policies.map(Path::to_owned));
    let run = move || match slot {
        Slot::Pricing => replay_as::<PricingSlot>(&rows, &module, policies.as_deref()),
        Slot::BookingTimeout => replay_as::<TimeoutSlot>(&rows, &module, policies.as_deref()),
        Slot::ReviewModeration => replay_as::<ModerationSlot>(&rows, &module, policies.as_deref()),
    };
    let (policy, sha256, unreadable_inputs, comparison) =
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| Error::Internal(format!("replay task: {e}")))??;
    Ok(ReplayReport {
        slot,
        policy,
        sha256,
        since,
        unreadable_inputs,
        comparison,
    })
}

fn replay_as<K: SlotKind>(
    rows: &[Replayable],
    module: &Path,
    policies: Option<&Path>,
) -> Result<(String, String, u64, Comparison)> {
    let mut tenant =
        Tenant::<K>::load(module, policies).map_err(|e| Error::BadRequest(e.to_string()))?;
    let mut unreadable = 0;
    let mut replayed = Vec::with_capacity(rows.len());
    for row in rows {
        let Ok(input) = serde_json::from_str::<K::Input>(&row.input) else {
            unreadable += 1;
            continue;
        };
        let answer = tenant.decide(&input);
        // A fresh instance per decision, as the server makes.
        tenant.release();
        let (price, verdict) = match K::outcome(&answer.output) {
            Outcome::Price(price) => (Some(price), None),
            Outcome::Verdict(word) => (None, Some(word)),
        };
        let candidate = Compared {
            price,
            verdict,
            fallback: answer.failure.is_some(),
            failure_kind: answer.failure.map(|kind| kind.as_str().to_owned()),
        };
        replayed.push((row, candidate));
    }
    let comparison = comparison::compare(
        replayed
            .iter()
            .map(|(row, candidate)| (&row.decision, candidate, row.booked_hours)),
    );
    Ok((
        tenant.policy().to_owned(),
        tenant.sha256().to_owned(),
        unreadable,
        comparison,
    ))
}

/// The oldest `limit` served decisions of `slot` since `since` as `policies.toml` sample entries
/// (`[[slot.samples]]`, the module's input record), ready to paste under the slot's table.
pub async fn fixtures(store: &Store, slot: Slot, since: Timestamp, limit: u32) -> Result<String> {
    let rows = decisions::replayable(store, slot.as_str(), since, limit).await?;
    let mut out = format!(
        "# {} logged {slot} decisions since {since}, as sample inputs: every version must answer them \
         validly before it may serve.\n",
        rows.len()
    );
    for row in &rows {
        let input = match slot {
            Slot::Pricing => wit_input::<PricingSlot>(&row.input),
            Slot::BookingTimeout => wit_input::<TimeoutSlot>(&row.input),
            Slot::ReviewModeration => wit_input::<ModerationSlot>(&row.input),
        };
        let Some(input) = input else { continue };
        out.push_str(&format!(
            "\n[[{slot}.samples]]\nname = \"logged {}\"\ninput = {input}\n",
            row.id
        ));
    }
    Ok(out)
}

/// The module's input record for a logged market input, as a TOML inline table.
fn wit_input<K: SlotKind>(logged: &str) -> Option<String> {
    let input: K::Input = serde_json::from_str(logged).ok()?;
    let wit = K::to_wit(&input, &K::HostState::default());
    let json = without_nulls(serde_json::to_value(wit).ok()?);
    toml::Value::try_from(json).ok().map(|v| v.to_string())
}

/// TOML has no null: an absent optional field is what the contract's `option` reads as none.
fn without_nulls(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => map
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k, without_nulls(v)))
            .collect(),
        serde_json::Value::Array(items) => items.into_iter().map(without_nulls).collect(),
        other => other,
    }
}
