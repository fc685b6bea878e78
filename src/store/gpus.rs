//! The GPU registry table.

use sqlx::FromRow;

use super::{Sql, Store};

pub const GPU_COLUMNS: &str = "id, miner_id, model, model_key, memory_gb, cuda_version, cuda_cores, \
    compute_capability, region, description, capabilities, price_micro, current_price_micro, status, \
    total_bookings, rating_sum, rating_count, last_heartbeat, created_at";

#[derive(Debug, Clone, FromRow)]
pub struct GpuRow {
    pub id: String,
    pub miner_id: String,
    pub model: String,
    pub model_key: String,
    pub memory_gb: f64,
    pub cuda_version: Option<String>,
    pub cuda_cores: Option<i64>,
    pub compute_capability: Option<String>,
    pub region: Option<String>,
    pub description: Option<String>,
    /// JSON array of strings.
    pub capabilities: String,
    pub price_micro: i64,
    pub current_price_micro: i64,
    pub status: String,
    pub total_bookings: i64,
    pub rating_sum: i64,
    pub rating_count: i64,
    pub last_heartbeat: Option<i64>,
    pub created_at: i64,
}

/// Filters of the catalogue listing, already normalised by the market layer.
#[derive(Debug, Default, Clone)]
pub struct GpuQuery {
    /// A `LIKE` pattern (escape character `\`) over `model_key`.
    pub model_like: Option<String>,
    /// A `LIKE` pattern over the lower-cased capabilities JSON; combined with `model_like` by OR when
    /// `model_or_capability` is set (the pricing endpoint's matching rule).
    pub capability_like: Option<String>,
    pub model_or_capability: bool,
    pub statuses: Vec<&'static str>,
    pub exclude_status: Option<&'static str>,
    pub memory_min: Option<f64>,
    pub price_max_micro: Option<i64>,
    pub region: Option<String>,
    pub miner_id: Option<String>,
    /// `ORDER BY` clause, chosen from a fixed set by the market layer (never user text).
    pub order_by: &'static str,
    pub limit: i64,
    pub offset: i64,
}

pub async fn insert(store: &Store, gpu: &GpuRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO gpus (id, miner_id, model, model_key, memory_gb, cuda_version, cuda_cores, \
         compute_capability, region, description, capabilities, price_micro, current_price_micro, status, \
         total_bookings, rating_sum, rating_count, last_heartbeat, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 0, 0, 0, $15, $16)",
    )
    .bind(&gpu.id)
    .bind(&gpu.miner_id)
    .bind(&gpu.model)
    .bind(&gpu.model_key)
    .bind(gpu.memory_gb)
    .bind(&gpu.cuda_version)
    .bind(gpu.cuda_cores)
    .bind(&gpu.compute_capability)
    .bind(&gpu.region)
    .bind(&gpu.description)
    .bind(&gpu.capabilities)
    .bind(gpu.price_micro)
    .bind(gpu.current_price_micro)
    .bind(&gpu.status)
    .bind(gpu.last_heartbeat)
    .bind(gpu.created_at)
    .execute(store.writer())
    .await?;
    store.catalogue_changed();
    Ok(())
}

pub async fn get(store: &Store, id: &str) -> Result<Option<GpuRow>, sqlx::Error> {
    let sql = format!("SELECT {GPU_COLUMNS} FROM gpus WHERE id = $1 AND deleted_at IS NULL");
    sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(store.reader())
        .await
}

pub async fn list(store: &Store, query: &GpuQuery) -> Result<Vec<GpuRow>, sqlx::Error> {
    let mut sql = Sql::new(format!(
        "SELECT {GPU_COLUMNS} FROM gpus WHERE deleted_at IS NULL"
    ));
    match (
        &query.model_like,
        &query.capability_like,
        query.model_or_capability,
    ) {
        (Some(model), Some(capability), true) => {
            sql.push(" AND (model_key LIKE ")
                .bind(model.clone())
                .push(" ESCAPE '\\'");
            sql.push(" OR LOWER(capabilities) LIKE ")
                .bind(capability.clone())
                .push(" ESCAPE '\\')");
        }
        (model, capability, _) => {
            if let Some(model) = model {
                sql.push(" AND model_key LIKE ")
                    .bind(model.clone())
                    .push(" ESCAPE '\\'");
            }
            if let Some(capability) = capability {
                sql.push(" AND LOWER(capabilities) LIKE ")
                    .bind(capability.clone())
                    .push(" ESCAPE '\\'");
            }
        }
    }
    if !query.statuses.is_empty() {
        sql.push(" AND status IN (");
        for (i, status) in query.statuses.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(status.to_string());
        }
        sql.push(")");
    }
    if let Some(status) = query.exclude_status {
        sql.push(" AND status <> ").bind(status.to_owned());
    }
    if let Some(memory_min) = query.memory_min {
        sql.push(" AND memory_gb >= ").bind(memory_min);
    }
    if let Some(price_max) = query.price_max_micro {
        sql.push(" AND current_price_micro <= ").bind(price_max);
    }
    if let Some(region) = &query.region {
        sql.push(" AND LOWER(region) = ")
            .bind(region.to_lowercase());
    }
    if let Some(miner_id) = &query.miner_id {
        sql.push(" AND miner_id = ").bind(miner_id.clone());
    }
    sql.push(" ORDER BY ").push(query.order_by);
    sql.push(" LIMIT ")
        .bind(query.limit)
        .push(" OFFSET ")
        .bind(query.offset);
    let (text, args) = sql.into_parts();
    sqlx::query_as_with(&text, args)
        .fetch_all(store.reader())
        .await
}

/// Removes a GPU from the catalogue unless it is booked. Rows stay for the order history.
pub async fn soft_delete(store: &Store, id: &str, now: i64) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE gpus SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL AND status <> 'booked'",
    )
    .bind(now)
    .bind(id)
    .execute(store.writer())
    .await?;
    store.catalogue_changed();
    Ok(result.rows_affected() == 1)
}

/// Records liveness; an offline GPU (which never holds an active booking) becomes available again.
pub async fn heartbeat(store: &Store, id: &str, now: i64) -> Result<Option<String>, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE gpus SET last_heartbeat = $1, \
         status = CASE WHEN status = 'offline' THEN 'available' ELSE status END \
         WHERE id = $2 AND deleted_at IS NULL",
    )
    .bind(now)
    .bind(id)
    .execute(store.writer())
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(None);
    }
    store.catalogue_changed();
    sqlx::query_scalar("SELECT status FROM gpus WHERE id = $1")
        .bind(id)
        .fetch_optional(store.writer())
        .await
}

/// Available GPUs whose heartbeat went silent turn offline. Booked ones are left to the timeout policy.
pub async fn mark_silent_offline(store: &Store, cutoff: i64) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE gpus SET status = 'offline' WHERE status = 'available' AND deleted_at IS NULL \
         AND last_heartbeat IS NOT NULL AND last_heartbeat < $1",
    )
    .bind(cutoff)
    .execute(store.writer())
    .await?;
    if result.rows_affected() > 0 {
        store.catalogue_changed();
    }
    Ok(result.rows_affected())
}

/// Current prices computed by the pricing policy, written only where they changed.
pub async fn update_current_prices(
    store: &Store,
    prices: &[(String, i64)],
) -> Result<(), sqlx::Error> {
    if prices.is_empty() {
        return Ok(());
    }
    // One statement per chunk instead of one per GPU: the writer is shared with bookings.
    for chunk in prices.chunks(PRICE_UPDATE_CHUNK) {
        let mut sql = Sql::new("UPDATE gpus SET current_price_micro = CASE id");
        for (id, micros) in chunk {
            sql.push(" WHEN ")
                .bind(id.clone())
                .push(" THEN ")
                .bind(*micros);
        }
        sql.push(" ELSE current_price_micro END WHERE id IN (");
        for (i, (id, _)) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(id.clone());
        }
        sql.push(")");
        let (text, args) = sql.into_parts();
        sqlx::query_with(&text, args)
            .execute(store.writer())
            .await?;
    }
    store.catalogue_changed();
    Ok(())
}

/// GPUs per price-update statement (two parameters each, plus the id list).
const PRICE_UPDATE_CHUNK: usize = 200;

/// The distinct model keys in the catalogue.
pub async fn model_keys(store: &Store) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT DISTINCT model_key FROM gpus WHERE deleted_at IS NULL")
        .fetch_all(store.reader())
        .await
}

#[derive(Debug, Clone, Copy, Default, FromRow)]
pub struct StatusCounts {
    pub total: i64,
    pub available: i64,
    pub booked: i64,
    pub offline: i64,
}

// SUM over integers is NUMERIC on PostgreSQL, which the Any driver cannot decode, hence the casts.
const STATUS_COUNTS: &str = "SELECT COUNT(*) AS total, \
    CAST(COALESCE(SUM(CASE WHEN status = 'available' THEN 1 ELSE 0 END), 0) AS BIGINT) AS available, \
    CAST(COALESCE(SUM(CASE WHEN status = 'booked' THEN 1 ELSE 0 END), 0) AS BIGINT) AS booked, \
    CAST(COALESCE(SUM(CASE WHEN status = 'offline' THEN 1 ELSE 0 END), 0) AS BIGINT) AS offline \
    FROM gpus WHERE deleted_at IS NULL";

pub async fn status_counts(
    store: &Store,
    model_key: Option<&str>,
) -> Result<StatusCounts, sqlx::Error> {
    match model_key {
        Some(key) => {
            sqlx::query_as(&format!("{STATUS_COUNTS} AND model_key = $1"))
                .bind(key)
                .fetch_one(store.reader())
                .await
        }
        None => {
            sqlx::query_as(STATUS_COUNTS)
                .fetch_one(store.reader())
                .await
        }
    }
}

/// A GPU with its model's status counts in one round trip: the booking path needs both.
pub async fn get_with_model_counts(
    store: &Store,
    id: &str,
) -> Result<Option<(GpuRow, StatusCounts)>, sqlx::Error> {
    #[derive(FromRow)]
    struct Row {
        #[sqlx(flatten)]
        gpu: GpuRow,
        model_total: i64,
        model_available: i64,
        model_booked: i64,
        model_offline: i64,
    }
    let peers =
        "SELECT COUNT(*) FROM gpus m WHERE m.model_key = g.model_key AND m.deleted_at IS NULL";
    let columns: Vec<String> = GPU_COLUMNS
        .split(", ")
        .map(|c| format!("g.{}", c.trim()))
        .collect();
    let sql = format!(
        "SELECT {}, ({peers}) AS model_total, \
         ({peers} AND m.status = 'available') AS model_available, \
         ({peers} AND m.status = 'booked') AS model_booked, \
         ({peers} AND m.status = 'offline') AS model_offline \
         FROM gpus g WHERE g.id = $1 AND g.deleted_at IS NULL",
        columns.join(", ")
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
