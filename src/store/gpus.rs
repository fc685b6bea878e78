//! The GPU registry table.

use std::sync::LazyLock;

use sqlx::AnyConnection;

use super::sql::{Sql, escape_like, qualified};
use super::{Store, StoreResult};
use crate::domain::model_name::PatternPart;
use crate::domain::{
    Gpu, GpuId, GpuStatus, ModelFilter, Money, PrincipalId, StatusCounts, Timestamp,
};

const GPU_COLUMNS: &str = "id, miner_id, model, model_key, memory_gb, cuda_version, cuda_cores, \
    compute_capability, region, description, capabilities, price_micro, current_price_micro, status, \
    total_bookings, rating_sum, rating_count, last_heartbeat, created_at";

/// Which GPUs to match by what they are.
#[derive(Debug, Clone, Default)]
pub enum Matching {
    #[default]
    Any,
    Model(ModelFilter),
    /// Has this capability (a whole element, case-insensitive).
    Capability(String),
    Both(ModelFilter, String),
    /// The pricing endpoint's rule, as the older coordinator's: the model matches, or one of the GPU's
    /// capabilities contains the text (case-insensitive substring: `llama2` finds `llama2-7b`).
    ModelOrCapability(ModelFilter, String),
}

/// Filters of a catalogue read.
#[derive(Debug, Clone, Default)]
pub struct GpuFilter {
    pub matching: Matching,
    /// Any of these (empty: any status).
    pub statuses: Vec<GpuStatus>,
    pub exclude_status: Option<GpuStatus>,
    pub memory_min: Option<f64>,
    pub current_price_max: Option<Money>,
    /// Case-insensitive.
    pub region: Option<String>,
    pub miner_id: Option<PrincipalId>,
}

/// Orders of a catalogue read; ties always break on id so pages are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuOrder {
    #[default]
    Id,
    CurrentPriceAsc,
    CurrentPriceDesc,
    MemoryAsc,
    MemoryDesc,
    RatingAsc,
    RatingDesc,
    CreatedAsc,
    CreatedDesc,
}

impl GpuOrder {
    fn sql(self) -> &'static str {
        match self {
            Self::Id => "id ASC",
            Self::CurrentPriceAsc => "current_price_micro ASC, id ASC",
            Self::CurrentPriceDesc => "current_price_micro DESC, id ASC",
            Self::MemoryAsc => "memory_gb ASC, id ASC",
            Self::MemoryDesc => "memory_gb DESC, id ASC",
            Self::RatingAsc => {
                "CASE WHEN rating_count = 0 THEN 0 ELSE rating_sum * 1.0 / rating_count END ASC, rating_count ASC, id ASC"
            }
            Self::RatingDesc => {
                "CASE WHEN rating_count = 0 THEN 0 ELSE rating_sum * 1.0 / rating_count END DESC, rating_count DESC, id ASC"
            }
            Self::CreatedAsc => "created_at ASC, id ASC",
            Self::CreatedDesc => "created_at DESC, id DESC",
        }
    }
}

/// A window of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Page {
    pub const fn first(limit: i64) -> Self {
        Self { limit, offset: 0 }
    }
}

/// A model filter as a `LIKE` pattern (escape `\`) over `model_key`.
fn like_pattern(filter: &ModelFilter) -> String {
    let mut pattern = String::new();
    for part in filter.pattern() {
        match part {
            PatternPart::AnyRun => pattern.push('%'),
            PatternPart::AnyOne => pattern.push('_'),
            PatternPart::Literal(c) => pattern.push_str(&escape_like(&c.to_string())),
        }
    }
    pattern
}

/// A `LIKE` pattern over the lower-cased JSON text of a capability list that matches one whole element.
fn capability_pattern(capability: &str) -> String {
    let quoted = serde_json::to_string(&capability.to_lowercase()).unwrap_or_default();
    format!("%{}%", escape_like(&quoted))
}

/// A `LIKE` pattern over the lower-cased JSON text of a capability list that matches when one element
/// contains `text`. The text is JSON-escaped like the stored elements, so a `"` in it is `\"` and can
/// never match the quote that closes one element and opens the next.
fn capability_substring_pattern(text: &str) -> String {
    let quoted = serde_json::to_string(&text.to_lowercase()).unwrap_or_default();
    let inner = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(&quoted);
    format!("%\"%{}%\"%", escape_like(inner))
}

fn push_model(sql: &mut Sql, filter: &ModelFilter) {
    sql.push("model_key LIKE ")
        .bind(like_pattern(filter))
        .push(" ESCAPE '\\'");
}

fn push_capability(sql: &mut Sql, capability: &str) {
    sql.push("LOWER(capabilities) LIKE ")
        .bind(capability_pattern(capability))
        .push(" ESCAPE '\\'");
}

static INSERT_GPU: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO gpus ({GPU_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 0, 0, 0, $15, $16)"
    )
});

pub async fn insert(store: &Store, gpu: &Gpu) -> StoreResult<()> {
    store
        .execute(
            sqlx::query(&INSERT_GPU)
                .bind(gpu.id.clone())
                .bind(gpu.miner_id.clone())
                .bind(gpu.model.clone())
                .bind(gpu.model_key.clone())
                .bind(gpu.memory_gb)
                .bind(gpu.cuda_version.clone())
                .bind(gpu.cuda_cores)
                .bind(gpu.compute_capability.clone())
                .bind(gpu.region.clone())
                .bind(gpu.description.clone())
                .bind(gpu.capabilities.to_json())
                .bind(gpu.asking_price)
                .bind(gpu.current_price)
                .bind(gpu.status.as_str())
                .bind(gpu.last_heartbeat)
                .bind(gpu.created_at),
        )
        .await?;
    Ok(())
}

pub async fn get(store: &Store, id: &GpuId) -> StoreResult<Option<Gpu>> {
    let sql = format!("SELECT {GPU_COLUMNS} FROM gpus WHERE id = $1 AND deleted_at IS NULL");
    Ok(sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(store.reader())
        .await?)
}

pub async fn list(
    store: &Store,
    filter: &GpuFilter,
    order: GpuOrder,
    page: Page,
) -> StoreResult<Vec<Gpu>> {
    let mut sql = Sql::new(format!(
        "SELECT {GPU_COLUMNS} FROM gpus WHERE deleted_at IS NULL"
    ));
    match &filter.matching {
        Matching::Any => {}
        Matching::Model(model) => {
            sql.push(" AND ");
            push_model(&mut sql, model);
        }
        Matching::Capability(capability) => {
            sql.push(" AND ");
            push_capability(&mut sql, capability);
        }
        Matching::Both(model, capability) => {
            sql.push(" AND ");
            push_model(&mut sql, model);
            sql.push(" AND ");
            push_capability(&mut sql, capability);
        }
        Matching::ModelOrCapability(model, text) => {
            sql.push(" AND (");
            push_model(&mut sql, model);
            sql.push(" OR LOWER(capabilities) LIKE ")
                .bind(capability_substring_pattern(text))
                .push(" ESCAPE '\\')");
        }
    }
    if !filter.statuses.is_empty() {
        sql.push(" AND status IN ")
            .bind_list(filter.statuses.iter().map(|s| s.as_str().to_owned()));
    }
    if let Some(status) = filter.exclude_status {
        sql.push(" AND status <> ").bind(status.as_str().to_owned());
    }
    if let Some(memory_min) = filter.memory_min {
        sql.push(" AND memory_gb >= ").bind(memory_min);
    }
    if let Some(price_max) = filter.current_price_max {
        sql.push(" AND current_price_micro <= ").bind(price_max);
    }
    if let Some(region) = &filter.region {
        sql.push(" AND LOWER(region) = ")
            .bind(region.to_lowercase());
    }
    if let Some(miner_id) = &filter.miner_id {
        sql.push(" AND miner_id = ").bind(miner_id.clone());
    }
    sql.push(" ORDER BY ").push(order.sql());
    sql.push(" LIMIT ")
        .bind(page.limit)
        .push(" OFFSET ")
        .bind(page.offset);
    let (text, args) = sql.into_parts();
    Ok(sqlx::query_as_with(&text, args)
        .fetch_all(store.reader())
        .await?)
}

/// Removes a GPU from the catalogue unless it is booked. Rows stay for the order history.
pub async fn soft_delete(store: &Store, id: &GpuId, now: Timestamp) -> StoreResult<bool> {
    let result = store
        .execute(
            sqlx::query(
                "UPDATE gpus SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL AND status <> 'booked'",
            )
            .bind(now)
            .bind(id.clone()),
        )
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Records liveness; an offline GPU (which never holds an active booking) becomes available again.
/// The GPU's status afterwards, or None for an unknown GPU.
pub async fn heartbeat(
    store: &Store,
    id: &GpuId,
    now: Timestamp,
) -> StoreResult<Option<GpuStatus>> {
    let id = id.clone();
    let status: Option<String> = store
        .write_statement(move |conn| {
            Box::pin(async move {
                Ok(sqlx::query_scalar(
                    "UPDATE gpus SET last_heartbeat = $1, \
                     status = CASE WHEN status = 'offline' THEN 'available' ELSE status END \
                     WHERE id = $2 AND deleted_at IS NULL RETURNING status",
                )
                .bind(now)
                .bind(id)
                .fetch_optional(conn)
                .await?)
            })
        })
        .await?;
    parse_status(status)
}

fn parse_status(status: Option<String>) -> StoreResult<Option<GpuStatus>> {
    status
        .map(|s| s.parse().map_err(super::StoreError::from))
        .transpose()
}

/// A GPU's status as the writer sees it now (after a lost race, say).
pub async fn status_of(store: &Store, id: &GpuId) -> StoreResult<Option<GpuStatus>> {
    let mut conn = store.writer().acquire().await?;
    status_in(&mut conn, id).await
}

/// A GPU's status as seen from `conn` (inside a write's transaction, say).
pub(super) async fn status_in(
    conn: &mut AnyConnection,
    id: &GpuId,
) -> StoreResult<Option<GpuStatus>> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM gpus WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    parse_status(status)
}

/// Available GPUs whose heartbeat went silent turn offline. Booked ones are left to the timeout policy.
pub async fn mark_silent_offline(store: &Store, cutoff: Timestamp) -> StoreResult<u64> {
    let result = store.execute(sqlx::query(
        "UPDATE gpus SET status = 'offline' WHERE status = 'available' AND deleted_at IS NULL \
         AND last_heartbeat IS NOT NULL AND last_heartbeat < $1",
    )
    .bind(cutoff))
    .await?;
    Ok(result.rows_affected())
}

/// GPUs per price-update statement (two parameters each, plus the id list).
const PRICE_UPDATE_CHUNK: usize = 200;

/// Current prices computed by the pricing policy; one statement per chunk instead of one per GPU, all
/// in one transaction, since the writer is shared with bookings.
pub async fn update_current_prices(store: &Store, prices: &[(GpuId, Money)]) -> StoreResult<()> {
    let mut statements = Vec::new();
    for chunk in prices.chunks(PRICE_UPDATE_CHUNK) {
        let mut sql = Sql::new("UPDATE gpus SET current_price_micro = CASE id");
        for (id, price) in chunk {
            sql.push(" WHEN ")
                .bind(id.clone())
                .push(" THEN ")
                .bind(*price);
        }
        sql.push(" ELSE current_price_micro END WHERE id IN ")
            .bind_list(chunk.iter().map(|(id, _)| id.clone()));
        statements.push(sql.into_parts());
    }
    store
        .write(move |conn| {
            Box::pin(async move {
                for (text, args) in statements {
                    sqlx::query_with(&text, args).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
        .await
}

/// The distinct model keys in the catalogue.
pub async fn model_keys(store: &Store) -> StoreResult<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT DISTINCT model_key FROM gpus WHERE deleted_at IS NULL")
            .fetch_all(store.reader())
            .await?,
    )
}

/// (model key, model, asking price) of every GPU in the catalogue: the input of a history sample.
pub async fn asking_prices(store: &Store) -> StoreResult<Vec<(String, String, Money)>> {
    Ok(
        sqlx::query_as("SELECT model_key, model, price_micro FROM gpus WHERE deleted_at IS NULL")
            .fetch_all(store.reader())
            .await?,
    )
}

// SUM over integers is NUMERIC on PostgreSQL, which the Any driver cannot decode, hence the casts.
const STATUS_COUNTS: &str = "SELECT COUNT(*) AS total, \
    CAST(COALESCE(SUM(CASE WHEN status = 'available' THEN 1 ELSE 0 END), 0) AS BIGINT) AS available, \
    CAST(COALESCE(SUM(CASE WHEN status = 'booked' THEN 1 ELSE 0 END), 0) AS BIGINT) AS booked, \
    CAST(COALESCE(SUM(CASE WHEN status = 'offline' THEN 1 ELSE 0 END), 0) AS BIGINT) AS offline \
    FROM gpus WHERE deleted_at IS NULL";

/// Status counts of one model's GPUs, or of the whole catalogue.
pub async fn status_counts(store: &Store, model_key: Option<&str>) -> StoreResult<StatusCounts> {
    let counts = match model_key {
        Some(key) => {
            sqlx::query_as(&format!("{STATUS_COUNTS} AND model_key = $1"))
                .bind(key)
                .fetch_one(store.reader())
                .await?
        }
        None => {
            sqlx::query_as(STATUS_COUNTS)
                .fetch_one(store.reader())
                .await?
        }
    };
    Ok(counts)
}

/// A GPU with its model's status counts in one round trip: the booking path needs both.
pub async fn get_with_model_counts(
    store: &Store,
    id: &GpuId,
) -> StoreResult<Option<(Gpu, StatusCounts)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        gpu: Gpu,
        model_total: i64,
        model_available: i64,
        model_booked: i64,
        model_offline: i64,
    }
    let peers =
        "SELECT COUNT(*) FROM gpus m WHERE m.model_key = g.model_key AND m.deleted_at IS NULL";
    let sql = format!(
        "SELECT {}, ({peers}) AS model_total, \
         ({peers} AND m.status = 'available') AS model_available, \
         ({peers} AND m.status = 'booked') AS model_booked, \
         ({peers} AND m.status = 'offline') AS model_offline \
         FROM gpus g WHERE g.id = $1 AND g.deleted_at IS NULL",
        qualified("g", GPU_COLUMNS)
    );
    let row: Option<Row> = sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(store.reader())
        .await?;
    Ok(row.map(|r| {
        let counts = StatusCounts {
            total: r.model_total,
            available: r.model_available,
            booked: r.model_booked,
            offline: r.model_offline,
        };
        (r.gpu, counts)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_filters_become_escaped_like_patterns() {
        assert_eq!(like_pattern(&ModelFilter::parse("RTX 40")), "%rtx40%");
        assert_eq!(like_pattern(&ModelFilter::parse("RTX*")), "rtx%");
        assert_eq!(like_pattern(&ModelFilter::parse("A?00")), "a_00");
        assert_eq!(like_pattern(&ModelFilter::parse("50%")), "%50\\%%");
        assert_eq!(like_pattern(&ModelFilter::exact("a_1")), "a\\_1");
    }

    #[test]
    fn capability_matches_a_whole_quoted_element() {
        assert_eq!(capability_pattern("FP16"), "%\"fp16\"%");
    }

    #[test]
    fn capability_substrings_stay_inside_one_element() {
        assert_eq!(capability_substring_pattern("Llama2"), "%\"%llama2%\"%");
        // A quote in the text is escaped as the stored JSON escapes it, LIKE wildcards are literal.
        assert_eq!(capability_substring_pattern("a\"b_"), "%\"%a\\\\\"b\\_%\"%");
    }
}
