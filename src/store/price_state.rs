//! Each GPU's pricing-guardrail state (its last booked quote): one row per GPU, written when a quote is
//! booked and read by every quote, so that replicas share it.

use std::collections::HashMap;

use super::{Statement, Store, StoreResult};
use crate::domain::PriceState;

type Row = (String, f64, i64, f64, f64);

const COLUMNS: &str = "s.gpu_id, s.anchor_price, s.anchor_unix, s.last_price, s.last_multiplier";

fn state((_, anchor_price, anchor_unix, last_price, last_multiplier): Row) -> PriceState {
    PriceState {
        anchor_price,
        anchor_unix,
        last_price,
        last_multiplier,
    }
}

/// The states of every GPU of one model, by GPU id.
pub async fn for_model(store: &Store, model_key: &str) -> StoreResult<HashMap<String, PriceState>> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM gpu_price_state s JOIN gpus g ON g.id = s.gpu_id \
         WHERE g.model_key = $1 AND g.deleted_at IS NULL"
    ))
    .bind(model_key)
    .fetch_all(store.reader())
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.0.clone(), state(row)))
        .collect())
}

/// Replaces a GPU's state with the new one.
const ON_CONFLICT_REPLACE: &str = "ON CONFLICT (gpu_id) DO UPDATE SET anchor_price = excluded.anchor_price, \
     anchor_unix = excluded.anchor_unix, last_price = excluded.last_price, \
     last_multiplier = excluded.last_multiplier, updated_at = excluded.updated_at";

/// Keeps the state bound by [`bind_state`] (`$18`..`$21`, after the booking's seventeen) for the GPU of
/// the row of a `booked` CTE that inserted a booking (`gpu_id`, `created_at`), in the booking's
/// statement (PostgreSQL).
pub(super) fn upsert_from_booked() -> String {
    format!(
        "INSERT INTO gpu_price_state (gpu_id, anchor_price, anchor_unix, last_price, last_multiplier, updated_at) \
         SELECT gpu_id, $18, $19, $20, $21, created_at FROM booked {ON_CONFLICT_REPLACE}"
    )
}

/// Keeps the state bound by [`bind_state`] for the booking's GPU (`$3`), as of its creation (`$16`):
/// the second statement of a booking on SQLite, which has no data-modifying CTE.
pub(super) fn upsert_for_booking() -> String {
    format!(
        "INSERT INTO gpu_price_state (gpu_id, anchor_price, anchor_unix, last_price, last_multiplier, updated_at) \
         VALUES ($3, $18, $19, $20, $21, $16) {ON_CONFLICT_REPLACE}"
    )
}

pub(super) fn bind_state(statement: Statement, state: &PriceState) -> Statement {
    statement
        .bind(state.anchor_price)
        .bind(state.anchor_unix)
        .bind(state.last_price)
        .bind(state.last_multiplier)
}
