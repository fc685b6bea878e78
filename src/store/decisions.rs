//! The decision log (`policy_decisions`): batched inserts, paging, retention, and the rows the
//! shadow and canary reports, `policy replay` and `policy fixtures` read.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use super::sql::Sql;
use super::{Statement, Store, StoreResult};
use crate::domain::{DecisionEntry, DecisionId, DecisionRole, Outcome, Timestamp};

pub(super) const COLUMNS: &str = "seq, id, slot, role, live_id, policy, module_sha256, input, output, price, \
    verdict, fallback, failure_kind, failure, fuel, duration_us, request_id, gpu_id, decided_at";

/// The most rows one INSERT statement carries. A batch goes in chunks of powers of two up to this, so
/// that only a few statement shapes exist (each prepared once and cached) and each binds few values:
/// SQLite's driver looks every parameter up by name, which costs quadratically in the parameters.
const ROWS_PER_INSERT: usize = 8;

/// Splits `n` rows into chunk sizes: as many full chunks as fit, then the powers of two of the rest.
fn chunk_sizes(n: usize) -> impl Iterator<Item = usize> {
    let full = std::iter::repeat_n(ROWS_PER_INSERT, n / ROWS_PER_INSERT);
    let rest = n % ROWS_PER_INSERT;
    let powers = (0..usize::BITS)
        .rev()
        .map(|bit| 1usize << bit)
        .filter(move |size| rest & size != 0);
    full.chain(powers)
}

/// Writes `entries` in one transaction, to the log's own file on SQLite. The statements are built
/// here, on the caller's task, and join the log writer's group commit.
pub async fn insert_batch(store: &Store, entries: &[DecisionEntry]) -> StoreResult<()> {
    let mut statements = Vec::new();
    let mut rest = entries;
    for size in chunk_sizes(entries.len()) {
        let (chunk, after) = rest.split_at(size);
        rest = after;
        let mut sql = Sql::new(
            "INSERT INTO policy_decisions (id, slot, role, live_id, policy, module_sha256, input, \
             output, price, verdict, fallback, failure_kind, failure, fuel, duration_us, \
             request_id, gpu_id, decided_at) VALUES ",
        );
        for (i, e) in chunk.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" });
            let (price, verdict) = match &e.outcome {
                Outcome::Price(price) => (Some(*price), None),
                Outcome::Verdict(word) => (None, Some(word.clone())),
            };
            sql.bind(e.id.to_string())
                .push(", ")
                .bind(e.slot.to_owned())
                .push(", ")
                .bind(e.role.as_str().to_owned())
                .push(", ")
                .bind(e.live_id.as_ref().map(|id| id.to_string()))
                .push(", ")
                .bind(e.policy.clone())
                .push(", ")
                .bind(e.module_sha256.clone())
                .push(", ")
                .bind(e.input.clone())
                .push(", ")
                .bind(e.output.clone())
                .push(", ")
                .bind(price)
                .push(", ")
                .bind(verdict)
                .push(", ")
                .bind(i64::from(e.fallback))
                .push(", ")
                .bind(e.failure_kind.clone())
                .push(", ")
                .bind(e.failure.clone())
                .push(", ")
                .bind(saturating_i64(e.fuel))
                .push(", ")
                .bind(saturating_i64(e.duration_us))
                .push(", ")
                .bind(e.request_id.clone())
                .push(", ")
                .bind(e.gpu_id.clone())
                .push(", ")
                .bind(e.decided_at.micros())
                .push(")");
        }
        statements.push(sql.into_statement());
    }
    store.decision_log().execute_all(statements).await?;
    Ok(())
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A logged decision as the admin API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LoggedDecision {
    /// The paging order (newest first); pass the last one as `cursor` for the next page.
    pub seq: i64,
    pub id: DecisionId,
    pub slot: String,
    pub role: DecisionRole,
    pub live_id: Option<DecisionId>,
    pub policy: String,
    pub module_sha256: Option<String>,
    /// The market's input to the policy.
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    /// The final answer, after guardrails or fallback.
    #[schema(value_type = Object)]
    pub output: serde_json::Value,
    pub price: Option<f64>,
    pub verdict: Option<String>,
    pub fallback: bool,
    pub failure_kind: Option<String>,
    pub failure: Option<String>,
    pub fuel: i64,
    pub duration_us: i64,
    pub request_id: Option<String>,
    pub gpu_id: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub decided_at: Timestamp,
}

fn logged(row: &AnyRow) -> StoreResult<LoggedDecision> {
    let json = |column: &str| -> StoreResult<serde_json::Value> {
        let text: String = row.try_get(column)?;
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    };
    let role: String = row.try_get("role")?;
    Ok(LoggedDecision {
        seq: row.try_get("seq")?,
        id: DecisionId::from(row.try_get::<String, _>("id")?),
        slot: row.try_get("slot")?,
        role: DecisionRole::parse(&role).unwrap_or(DecisionRole::Live),
        live_id: row
            .try_get::<Option<String>, _>("live_id")?
            .map(DecisionId::from),
        policy: row.try_get("policy")?,
        module_sha256: row.try_get("module_sha256")?,
        input: json("input")?,
        output: json("output")?,
        price: row.try_get("price")?,
        verdict: row.try_get("verdict")?,
        fallback: row.try_get::<i64, _>("fallback")? != 0,
        failure_kind: row.try_get("failure_kind")?,
        failure: row.try_get("failure")?,
        fuel: row.try_get("fuel")?,
        duration_us: row.try_get("duration_us")?,
        request_id: row.try_get("request_id")?,
        gpu_id: row.try_get("gpu_id")?,
        decided_at: Timestamp::from_micros(row.try_get("decided_at")?),
    })
}

/// The filters of `GET /v1/admin/decisions`.
#[derive(Debug, Clone, Default)]
pub struct DecisionFilter {
    pub slot: Option<String>,
    pub role: Option<DecisionRole>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub gpu_id: Option<String>,
    pub fallback: Option<bool>,
    /// Entries older than this `seq` (the previous page's last).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// One page of entries, newest first.
pub async fn list(store: &Store, filter: &DecisionFilter) -> StoreResult<Vec<LoggedDecision>> {
    let mut sql = Sql::new(format!(
        "SELECT {COLUMNS} FROM policy_decisions WHERE 1 = 1"
    ));
    if let Some(slot) = &filter.slot {
        sql.push(" AND slot = ").bind(slot.clone());
    }
    if let Some(role) = filter.role {
        sql.push(" AND role = ").bind(role.as_str().to_owned());
    }
    if let Some(since) = filter.since {
        sql.push(" AND decided_at >= ").bind(since.micros());
    }
    if let Some(until) = filter.until {
        sql.push(" AND decided_at < ").bind(until.micros());
    }
    if let Some(gpu_id) = &filter.gpu_id {
        sql.push(" AND gpu_id = ").bind(gpu_id.clone());
    }
    if let Some(fallback) = filter.fallback {
        sql.push(" AND fallback = ").bind(i64::from(fallback));
    }
    if let Some(before) = filter.before_seq {
        sql.push(" AND seq < ").bind(before);
    }
    sql.push(" ORDER BY seq DESC LIMIT ")
        .bind(i64::from(filter.limit));
    let (text, args) = sql.into_parts();
    let rows = sqlx::query_with(&text, args)
        .fetch_all(store.reader())
        .await?;
    rows.iter().map(logged).collect()
}

pub async fn get(store: &Store, id: &str) -> StoreResult<Option<LoggedDecision>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM policy_decisions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(store.reader())
    .await?;
    row.as_ref().map(logged).transpose()
}

/// Deletes entries decided before `older_than` and all but the newest `max_rows`; returns how many.
pub async fn prune(store: &Store, older_than: Timestamp, max_rows: u64) -> StoreResult<u64> {
    let store = store.decision_log();
    // Entries are appended in about the order they were decided: everything before the oldest entry
    // still within the age goes, found by walking `seq` from the oldest (no time index to keep up).
    let aged = store
        .execute(
            Statement::new(
                "DELETE FROM policy_decisions WHERE seq < COALESCE(\
                 (SELECT seq FROM policy_decisions WHERE decided_at >= $1 ORDER BY seq LIMIT 1), \
                 (SELECT MAX(seq) + 1 FROM policy_decisions))",
            )
            .bind(older_than.micros()),
        )
        .await?;
    let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM policy_decisions")
        .fetch_one(store.reader())
        .await?;
    let Some(newest) = newest else {
        return Ok(aged);
    };
    // seq has gaps only where rows were deleted, so this keeps at most `max_rows`.
    let keep_from = newest.saturating_sub(saturating_i64(max_rows)) + 1;
    let counted = store
        .execute(Statement::new("DELETE FROM policy_decisions WHERE seq < $1").bind(keep_from))
        .await?;
    Ok(aged + counted)
}

/// What a comparison needs of one decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Compared {
    pub price: Option<f64>,
    pub verdict: Option<String>,
    pub fallback: bool,
    pub failure_kind: Option<String>,
}

fn compared(row: &AnyRow, prefix: &str) -> StoreResult<Compared> {
    let column = |name: &str| format!("{prefix}{name}");
    Ok(Compared {
        price: row.try_get(column("price").as_str())?,
        verdict: row.try_get(column("verdict").as_str())?,
        fallback: row.try_get::<i64, _>(column("fallback").as_str())? != 0,
        failure_kind: row.try_get(column("failure_kind").as_str())?,
    })
}

/// A shadow decision beside the served one, and the booked hours when the served one was booked.
#[derive(Debug, Clone)]
pub struct ShadowPair {
    pub live: Compared,
    pub shadow: Compared,
    pub booked_hours: Option<f64>,
}

/// The newest `limit` shadow decisions of `module_sha256` in `slot` since `since`, with the served
/// decisions they shadow.
pub async fn shadow_pairs(
    store: &Store,
    slot: &str,
    module_sha256: &str,
    since: Timestamp,
    limit: u32,
) -> StoreResult<Vec<ShadowPair>> {
    let rows = sqlx::query(
        "SELECT l.price AS l_price, l.verdict AS l_verdict, l.fallback AS l_fallback, \
         l.failure_kind AS l_failure_kind, s.price AS s_price, s.verdict AS s_verdict, \
         s.fallback AS s_fallback, s.failure_kind AS s_failure_kind, b.duration_seconds \
         FROM policy_decisions s JOIN policy_decisions l ON l.id = s.live_id \
         LEFT JOIN bookings b ON b.pricing_decision = l.id \
         WHERE s.slot = $1 AND s.role = 'shadow' AND s.module_sha256 = $2 AND s.decided_at >= $3 \
         ORDER BY s.seq DESC LIMIT $4",
    )
    .bind(slot)
    .bind(module_sha256)
    .bind(since.micros())
    .bind(i64::from(limit))
    .fetch_all(store.reader())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ShadowPair {
                live: compared(row, "l_")?,
                shadow: compared(row, "s_")?,
                booked_hours: booked_hours(row)?,
            })
        })
        .collect()
}

fn booked_hours(row: &AnyRow) -> StoreResult<Option<f64>> {
    let seconds: Option<i64> = row.try_get("duration_seconds")?;
    Ok(seconds.map(|s| s as f64 / 3600.0))
}

/// A served decision of one arm of a canary.
#[derive(Debug, Clone)]
pub struct ArmDecision {
    pub role: DecisionRole,
    pub module_sha256: Option<String>,
    pub decision: Compared,
    pub booked_hours: Option<f64>,
}

/// The newest `limit` served (live and canary) decisions of `slot` since `since`.
pub async fn served(
    store: &Store,
    slot: &str,
    since: Timestamp,
    limit: u32,
) -> StoreResult<Vec<ArmDecision>> {
    let rows = sqlx::query(
        "SELECT d.role, d.module_sha256, d.price AS d_price, d.verdict AS d_verdict, \
         d.fallback AS d_fallback, d.failure_kind AS d_failure_kind, b.duration_seconds \
         FROM policy_decisions d LEFT JOIN bookings b ON b.pricing_decision = d.id \
         WHERE d.slot = $1 AND d.role IN ('live', 'canary') AND d.decided_at >= $2 \
         ORDER BY d.seq DESC LIMIT $3",
    )
    .bind(slot)
    .bind(since.micros())
    .bind(i64::from(limit))
    .fetch_all(store.reader())
    .await?;
    rows.iter()
        .map(|row| {
            let role: String = row.try_get("role")?;
            Ok(ArmDecision {
                role: DecisionRole::parse(&role).unwrap_or(DecisionRole::Live),
                module_sha256: row.try_get("module_sha256")?,
                decision: compared(row, "d_")?,
                booked_hours: booked_hours(row)?,
            })
        })
        .collect()
}

/// A served decision to replay: its input, what it answered, and the booked hours if booked.
#[derive(Debug, Clone)]
pub struct Replayable {
    pub id: DecisionId,
    pub input: String,
    pub decision: Compared,
    pub booked_hours: Option<f64>,
}

/// The oldest `limit` served decisions of `slot` since `since`, in the order they were made.
pub async fn replayable(
    store: &Store,
    slot: &str,
    since: Timestamp,
    limit: u32,
) -> StoreResult<Vec<Replayable>> {
    let rows = sqlx::query(
        "SELECT d.id, d.input, d.price AS d_price, d.verdict AS d_verdict, \
         d.fallback AS d_fallback, d.failure_kind AS d_failure_kind, b.duration_seconds \
         FROM policy_decisions d LEFT JOIN bookings b ON b.pricing_decision = d.id \
         WHERE d.slot = $1 AND d.role IN ('live', 'canary') AND d.decided_at >= $2 \
         ORDER BY d.seq LIMIT $3",
    )
    .bind(slot)
    .bind(since.micros())
    .bind(i64::from(limit))
    .fetch_all(store.reader())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Replayable {
                id: DecisionId::from(row.try_get::<String, _>("id")?),
                input: row.try_get("input")?,
                decision: compared(row, "d_")?,
                booked_hours: booked_hours(row)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{ROWS_PER_INSERT, chunk_sizes};

    #[test]
    fn a_batch_goes_in_few_chunk_shapes_that_add_up() {
        for n in 0..=3 * ROWS_PER_INSERT + 1 {
            let sizes: Vec<usize> = chunk_sizes(n).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n, "{n}: {sizes:?}");
            assert!(
                sizes
                    .iter()
                    .all(|s| s.is_power_of_two() && *s <= ROWS_PER_INSERT),
                "{n}: {sizes:?}"
            );
        }
        assert_eq!(chunk_sizes(23).collect::<Vec<_>>(), [8, 8, 4, 2, 1]);
    }
}
