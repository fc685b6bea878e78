//! The GPU registry table.

use std::sync::LazyLock;

use rusqlite::OptionalExtension;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow};

use super::sql::{Sql, escape_like, qualified};
use super::{Backend, Statement, Store, StoreResult, sqlite_reads};
use crate::domain::model_name::PatternPart;
use crate::domain::{
    Gpu, GpuId, GpuStatus, ModelFilter, Money, PriceState, PrincipalId, StatusCounts, Timestamp,
};
use sqlx::Row;

const GPU_COLUMNS: &str = "id, miner_id, model, model_key, memory_gb, cuda_version, cuda_cores, \
    compute_capability, region, description, capabilities, price_micro, current_price_micro, status, \
    total_bookings, rating_sum, rating_count, last_heartbeat, created_at";
const GPU_COLUMN_COUNT: usize = 19;

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

/// A capability as stored in `gpu_capabilities` and compared by the filters: case-insensitive.
fn capability_key(capability: &str) -> String {
    capability.to_lowercase()
}

/// A `LIKE` pattern over capability names that matches when one contains `text`.
fn capability_substring_pattern(text: &str) -> String {
    format!("%{}%", escape_like(&capability_key(text)))
}

/// Names resolved from a vocabulary table beyond this many are matched by a subquery instead of a
/// bound list, which both backends cap in size.
const MAX_BOUND_NAMES: usize = 500;

/// What a name pattern matched in its vocabulary (`gpu_models` or `capability_names`). Patterns are
/// resolved against those few rows first so the GPUs are then found through exact, indexed values
/// (a substring `LIKE` over 100 000 rows reads them all); one model key keeps the listing order of
/// its index, so a page reads only the rows it shows.
enum Names {
    None,
    Listed(Vec<String>),
    /// Too many to bind: `column IN (SELECT name FROM table WHERE name LIKE pattern)`.
    Pattern(String),
}

impl Names {
    async fn resolve(
        store: &Store,
        table: &str,
        column: &str,
        pattern: String,
    ) -> StoreResult<Self> {
        let query = Statement::new(format!(
            "SELECT {column} FROM {table} WHERE {column} LIKE $1 ESCAPE '\\'"
        ))
        .bind(&pattern);
        let names: Vec<(String,)> = store.fetch_all(&query, |row| Ok((row.get(0)?,))).await?;
        let names: Vec<String> = names.into_iter().map(|(name,)| name).collect();
        Ok(match names.len() {
            0 => Self::None,
            n if n > MAX_BOUND_NAMES => Self::Pattern(pattern),
            _ => Self::Listed(names),
        })
    }

    async fn models(store: &Store, filter: &ModelFilter) -> StoreResult<Self> {
        Self::resolve(store, "gpu_models", "model_key", like_pattern(filter)).await
    }

    async fn capabilities_containing(store: &Store, text: &str) -> StoreResult<Self> {
        Self::resolve(
            store,
            "capability_names",
            "capability",
            capability_substring_pattern(text),
        )
        .await
    }

    fn is_empty(&self) -> bool {
        matches!(self, Self::None)
    }

    /// `column` is one of the names (nothing when there are none: check [`Self::is_empty`] first).
    fn push_match(&self, sql: &mut Sql, column: &str, table: &str, name_column: &str) {
        match self {
            Self::None => {}
            Self::Listed(names) if names.len() == 1 => {
                sql.push(column).push(" = ").bind(names[0].clone());
            }
            Self::Listed(names) => {
                sql.push(column)
                    .push(" IN ")
                    .bind_list(names.iter().cloned());
            }
            Self::Pattern(pattern) => {
                sql.push(column)
                    .push(&format!(
                        " IN (SELECT {name_column} FROM {table} WHERE {name_column} LIKE "
                    ))
                    .bind(pattern.clone())
                    .push(" ESCAPE '\\')");
            }
        }
    }

    fn push_model(&self, sql: &mut Sql) {
        self.push_match(sql, "model_key", "gpu_models", "model_key");
    }
}

/// Has this capability (whole, case-insensitive): a probe of `gpu_capabilities` by primary key per row.
fn push_has_capability(sql: &mut Sql, capability: &str) {
    sql.push(
        "EXISTS (SELECT 1 FROM gpu_capabilities c WHERE c.gpu_id = gpus.id AND c.capability = ",
    )
    .bind(capability_key(capability))
    .push(")");
}

static INSERT_GPU: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO gpus ({GPU_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 0, 0, 0, $15, $16)"
    )
});

/// Registers a GPU with its model and capability names, in one transaction (group-committed on
/// SQLite).
pub async fn insert(store: &Store, gpu: &Gpu) -> StoreResult<()> {
    store.execute_all(insert_statements(gpu)).await?;
    Ok(())
}

fn insert_statements(gpu: &Gpu) -> Vec<Statement> {
    let row = Statement::new(INSERT_GPU.as_str())
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
        .bind(gpu.capabilities.to_json())
        .bind(gpu.asking_price)
        .bind(gpu.current_price)
        .bind(gpu.status.as_str())
        .bind(gpu.last_heartbeat)
        .bind(gpu.created_at);
    let model =
        Statement::new("INSERT INTO gpu_models (model_key) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(&gpu.model_key);
    let mut statements = vec![row, model];
    let mut capabilities: Vec<String> = gpu
        .capabilities
        .0
        .iter()
        .map(|c| capability_key(c))
        .collect();
    capabilities.sort();
    capabilities.dedup();
    if !capabilities.is_empty() {
        let mut rows =
            Sql::new("INSERT INTO gpu_capabilities (gpu_id, capability, created_at) VALUES ");
        let mut names = Sql::new("INSERT INTO capability_names (capability) VALUES ");
        for (i, capability) in capabilities.iter().enumerate() {
            let separator = if i == 0 { "(" } else { ", (" };
            rows.push(separator)
                .bind(gpu.id.clone())
                .push(", ")
                .bind(capability.clone())
                .push(", ")
                .bind(gpu.created_at)
                .push(")");
            names.push(separator).bind(capability.clone()).push(")");
        }
        names.push(" ON CONFLICT DO NOTHING");
        statements.extend([rows.into_statement(), names.into_statement()]);
    }
    statements
}

static GET_GPU: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {GPU_COLUMNS} FROM gpus WHERE id = $1 AND deleted_at IS NULL")
});

/// A GPU by id. On SQLite it runs on the calling thread (see [`super::sqlite_reads`]).
pub async fn get(store: &Store, id: &GpuId) -> StoreResult<Option<Gpu>> {
    if let Some(readers) = store.sqlite_reads() {
        return readers.read(|conn| {
            conn.prepare_cached(&GET_GPU)?
                .query_row([id.as_str()], |row| sqlite_reads::gpu(row, 0))
                .optional()
        });
    }
    Ok(sqlx::query_as(&GET_GPU)
        .bind(id)
        .fetch_optional(store.reader())
        .await?)
}

/// A [`Matching`] with its name patterns resolved; None when it can match nothing.
enum Resolved<'a> {
    Any,
    Model(Names),
    Capability(&'a str),
    Both(Names, &'a str),
    ModelOrCapability(Names, Names),
}

impl<'a> Resolved<'a> {
    async fn of(store: &Store, matching: &'a Matching) -> StoreResult<Option<Self>> {
        let resolved = match matching {
            Matching::Any => Self::Any,
            Matching::Model(model) => Self::Model(Names::models(store, model).await?),
            Matching::Capability(capability) => Self::Capability(capability),
            Matching::Both(model, capability) => {
                Self::Both(Names::models(store, model).await?, capability)
            }
            Matching::ModelOrCapability(model, text) => Self::ModelOrCapability(
                Names::models(store, model).await?,
                Names::capabilities_containing(store, text).await?,
            ),
        };
        let matches_nothing = match &resolved {
            Self::Model(models) | Self::Both(models, _) => models.is_empty(),
            Self::ModelOrCapability(models, capabilities) => {
                models.is_empty() && capabilities.is_empty()
            }
            Self::Any | Self::Capability(_) => false,
        };
        Ok((!matches_nothing).then_some(resolved))
    }

    /// The models when the set is whole models (no capability side): their figures are rows of
    /// `gpu_model_counts`.
    fn whole_models(&self) -> Option<&Names> {
        match self {
            Self::Model(models) => Some(models),
            Self::ModelOrCapability(models, capabilities) if capabilities.is_empty() => {
                Some(models)
            }
            _ => None,
        }
    }

    fn capability(&self) -> Option<&'a str> {
        match self {
            Self::Capability(capability) | Self::Both(_, capability) => Some(capability),
            _ => None,
        }
    }
}

pub async fn list(
    store: &Store,
    filter: &GpuFilter,
    order: GpuOrder,
    page: Page,
) -> StoreResult<Vec<Gpu>> {
    let Some(sql) = list_query(store, filter, order, page).await? else {
        return Ok(Vec::new());
    };
    store
        .fetch_all(&sql.into_statement(), |row| sqlite_reads::gpu(row, 0))
        .await
}

/// The database's plan for [`list`], one line per step (empty when the filter matches nothing
/// without a query).
pub async fn explain_list(
    store: &Store,
    filter: &GpuFilter,
    order: GpuOrder,
    page: Page,
) -> StoreResult<Vec<String>> {
    match list_query(store, filter, order, page).await? {
        Some(sql) => explain(store, sql).await,
        None => Ok(Vec::new()),
    }
}

/// The database's plan for `sql`, one line per step: `EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN` on
/// PostgreSQL with sequential scans and sorts discouraged, so that on a small table (where
/// PostgreSQL rightly prefers reading everything) it still shows which index can serve the query
/// and its order.
pub(super) async fn explain(store: &Store, sql: Sql) -> StoreResult<Vec<String>> {
    let (text, args) = sql.into_parts();
    let mut tx = super::begin(store.reader()).await?;
    let (explain, detail_column) = match store.backend() {
        Backend::Sqlite => ("EXPLAIN QUERY PLAN", 3),
        Backend::Postgres => {
            for setting in ["enable_seqscan", "enable_sort"] {
                sqlx::query(&format!("SET LOCAL {setting} = off"))
                    .execute(&mut *tx)
                    .await?;
            }
            ("EXPLAIN", 0)
        }
    };
    let rows = sqlx::query_with(&format!("{explain} {text}"), args)
        .fetch_all(&mut *tx)
        .await?;
    tx.rollback().await?;
    rows.iter()
        .map(|row| Ok(row.try_get::<String, _>(detail_column)?))
        .collect()
}

/// The catalogue read for a filter, or None when it can match nothing.
async fn list_query(
    store: &Store,
    filter: &GpuFilter,
    order: GpuOrder,
    page: Page,
) -> StoreResult<Option<Sql>> {
    let Some(matching) = Resolved::of(store, &filter.matching).await? else {
        return Ok(None);
    };
    Ok(Some(resolved_list_query(&matching, filter, order, page)))
}

/// The catalogue read for a filter whose names are resolved (`filter.matching` is not read again).
fn resolved_list_query(
    matching: &Resolved<'_>,
    filter: &GpuFilter,
    order: GpuOrder,
    page: Page,
) -> Sql {
    // A capability filter in the default (creation) order reads the GPUs through the capability's
    // listing index: a page costs its own rows however rare or common the capability is. In another
    // order each row is probed instead.
    let capability_listing = match order {
        GpuOrder::CreatedAsc => Some("c.created_at ASC, c.gpu_id ASC"),
        GpuOrder::CreatedDesc => Some("c.created_at DESC, c.gpu_id DESC"),
        _ => None,
    }
    .zip(matching.capability());
    let mut sql = match capability_listing {
        Some((_, capability)) => {
            let mut sql = Sql::new(format!(
                "SELECT {} FROM gpu_capabilities c JOIN gpus ON gpus.id = c.gpu_id \
                 WHERE c.capability = ",
                qualified("gpus", GPU_COLUMNS)
            ));
            sql.bind(capability_key(capability))
                .push(" AND gpus.deleted_at IS NULL");
            sql
        }
        None => Sql::new(format!(
            "SELECT {GPU_COLUMNS} FROM gpus WHERE deleted_at IS NULL"
        )),
    };
    push_matching(&mut sql, matching, capability_listing.is_some());
    push_filters(&mut sql, filter);
    sql.push(" ORDER BY ")
        .push(capability_listing.map_or_else(|| order.sql(), |(by, _)| by));
    // The page as literals, not parameters: PostgreSQL plans a prepared statement's parameters for
    // any value, and for an unknown LIMIT it assumes a tenth of the table, so it planned every call
    // afresh (its generic plan, a parallel scan for a capability, cost more than a custom one).
    // With LIMIT 20 in the text it keeps one plan per query shape. Both are integers: nothing to
    // escape.
    sql.push(&format!(" LIMIT {} OFFSET {}", page.limit, page.offset));
    sql
}

/// ` AND` the GPU matches; `capability_joined`: the capability is already required by a join.
fn push_matching(sql: &mut Sql, matching: &Resolved<'_>, capability_joined: bool) {
    match matching {
        Resolved::Any => {}
        Resolved::Model(models) => {
            sql.push(" AND ");
            models.push_model(sql);
        }
        Resolved::Capability(capability) => {
            if !capability_joined {
                sql.push(" AND ");
                push_has_capability(sql, capability);
            }
        }
        Resolved::Both(models, capability) => {
            sql.push(" AND ");
            models.push_model(sql);
            if !capability_joined {
                sql.push(" AND ");
                push_has_capability(sql, capability);
            }
        }
        Resolved::ModelOrCapability(models, capabilities) if capabilities.is_empty() => {
            sql.push(" AND ");
            models.push_model(sql);
        }
        Resolved::ModelOrCapability(models, capabilities) => {
            // A union of two indexed lookups: an OR of an IN list and an IN subquery is a full
            // scan on PostgreSQL.
            sql.push(" AND id IN (");
            if !models.is_empty() {
                sql.push("SELECT id FROM gpus WHERE deleted_at IS NULL AND ");
                models.push_model(sql);
                sql.push(" UNION ");
            }
            sql.push("SELECT gpu_id FROM gpu_capabilities WHERE ");
            capabilities.push_match(sql, "capability", "capability_names", "capability");
            sql.push(")");
        }
    }
}

/// ` AND` the filters other than the matching.
fn push_filters(sql: &mut Sql, filter: &GpuFilter) {
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
}

/// Price statistics of a set of GPUs, computed by the database (the pricing endpoint's figures).
#[derive(Debug, Clone, PartialEq)]
pub struct PriceStatistics {
    /// The models the set's GPUs belong to, sorted.
    pub model_keys: Vec<String>,
    pub counts: StatusCounts,
    pub min_asking: Money,
    pub max_asking: Money,
    /// The sum of the asking prices in micro-units: the caller rounds the average once.
    pub asking_sum: i64,
    /// The middle asking price of the set in price order; the middle two for an even count.
    pub middle_asking: Vec<Money>,
    /// The sum of the available GPUs' current prices in micro-units.
    pub available_current_sum: i64,
    /// The first GPU in current-price order (ties broken on id).
    pub cheapest: Gpu,
    /// The first available GPU in that order.
    pub cheapest_available: Option<Gpu>,
}

/// One model's share of a [`PriceStatistics`].
#[derive(sqlx::FromRow)]
struct ModelAggregate {
    model_key: String,
    total: i64,
    available: i64,
    booked: i64,
    offline: i64,
    min_asking: Money,
    max_asking: Money,
    asking_sum: i64,
    available_current_sum: i64,
}

// Grouped by model so the set's models come with the figures. SUM over integers is NUMERIC on
// PostgreSQL, which the Any driver cannot decode, hence the casts.
const MODEL_AGGREGATE: &str = "SELECT model_key, COUNT(*) AS total, \
    CAST(SUM(CASE WHEN status = 'available' THEN 1 ELSE 0 END) AS BIGINT) AS available, \
    CAST(SUM(CASE WHEN status = 'booked' THEN 1 ELSE 0 END) AS BIGINT) AS booked, \
    CAST(SUM(CASE WHEN status = 'offline' THEN 1 ELSE 0 END) AS BIGINT) AS offline, \
    MIN(price_micro) AS min_asking, MAX(price_micro) AS max_asking, \
    CAST(SUM(price_micro) AS BIGINT) AS asking_sum, \
    CAST(SUM(CASE WHEN status = 'available' THEN current_price_micro ELSE 0 END) AS BIGINT) \
    AS available_current_sum FROM gpus WHERE deleted_at IS NULL";

/// The same figures for whole models, from the rows the triggers keep (migrations/*/0011) and the
/// ends of each model's asking-price index: a few probes per model instead of a pass over its GPUs.
const MODEL_COUNTS: &str = "SELECT model_key, total, available, booked, offline, \
    (SELECT MIN(price_micro) FROM gpus WHERE deleted_at IS NULL \
     AND gpus.model_key = gpu_model_counts.model_key) AS min_asking, \
    (SELECT MAX(price_micro) FROM gpus WHERE deleted_at IS NULL \
     AND gpus.model_key = gpu_model_counts.model_key) AS max_asking, \
    asking_sum, available_current_sum FROM gpu_model_counts WHERE total > 0";

fn aggregate_query(matching: &Resolved<'_>) -> Sql {
    if let Some(models) = matching.whole_models() {
        let mut sql = Sql::new(MODEL_COUNTS);
        sql.push(" AND ");
        models.push_model(&mut sql);
        return sql;
    }
    let mut sql = Sql::new(MODEL_AGGREGATE);
    push_matching(&mut sql, matching, false);
    sql.push(" GROUP BY model_key");
    sql
}

/// The asking prices at `offset`, `count` of them, in price order.
fn asking_at_query(matching: &Resolved<'_>, offset: i64, count: i64) -> Sql {
    let mut sql = Sql::new("SELECT price_micro FROM gpus WHERE deleted_at IS NULL");
    push_matching(&mut sql, matching, false);
    // Literals, as in a catalogue page (see `resolved_list_query`).
    sql.push(&format!(
        " ORDER BY price_micro LIMIT {count} OFFSET {offset}"
    ));
    sql
}

/// The first GPU in current-price order, among the available ones when `available`.
fn cheapest_query(matching: &Resolved<'_>, available: bool) -> Sql {
    let filter = GpuFilter {
        statuses: if available {
            vec![GpuStatus::Available]
        } else {
            Vec::new()
        },
        ..GpuFilter::default()
    };
    resolved_list_query(matching, &filter, GpuOrder::CurrentPriceAsc, Page::first(1))
}

/// Where the middle of `total` sorted values starts and how many values it has (two for an even
/// count, whose median is their mean).
fn middle_of(total: i64) -> (i64, i64) {
    if total % 2 == 1 {
        (total / 2, 1)
    } else {
        (total / 2 - 1, 2)
    }
}

/// The figures of the GPUs `matching` selects, or None when it selects none. For whole models the
/// counts and sums are the rows the triggers keep; a set with a capability side is aggregated over
/// its index entries. The median is a walk to the middle of the asking-price index, the cheapest
/// GPUs the first entries of the current-price index. The queries share one snapshot (a read-only
/// transaction, repeatable read on PostgreSQL) so the middle and the cheapest GPU belong to the
/// counted set.
pub async fn price_statistics(
    store: &Store,
    matching: &Matching,
) -> StoreResult<Option<PriceStatistics>> {
    let Some(matching) = Resolved::of(store, matching).await? else {
        return Ok(None);
    };
    let mut tx = super::begin(store.reader()).await?;
    if store.backend() == Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
    }
    let statistics = price_statistics_in(&mut tx, &matching).await?;
    tx.commit().await?;
    Ok(statistics)
}

async fn price_statistics_in(
    conn: &mut AnyConnection,
    matching: &Resolved<'_>,
) -> StoreResult<Option<PriceStatistics>> {
    let (text, args) = aggregate_query(matching).into_parts();
    let models: Vec<ModelAggregate> = sqlx::query_as_with(&text, args)
        .fetch_all(&mut *conn)
        .await?;
    let (Some(min_asking), Some(max_asking)) = (
        models.iter().map(|m| m.min_asking).min(),
        models.iter().map(|m| m.max_asking).max(),
    ) else {
        return Ok(None);
    };
    let mut counts = StatusCounts::default();
    let (mut asking_sum, mut available_current_sum) = (0i64, 0i64);
    for model in &models {
        counts.total += model.total;
        counts.available += model.available;
        counts.booked += model.booked;
        counts.offline += model.offline;
        asking_sum = asking_sum.saturating_add(model.asking_sum);
        available_current_sum = available_current_sum.saturating_add(model.available_current_sum);
    }
    let (offset, count) = middle_of(counts.total);
    let (text, args) = asking_at_query(matching, offset, count).into_parts();
    let middle_asking: Vec<Money> = sqlx::query_scalar_with(&text, args)
        .fetch_all(&mut *conn)
        .await?;
    let (text, args) = cheapest_query(matching, false).into_parts();
    let cheapest: Option<Gpu> = sqlx::query_as_with(&text, args)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(cheapest) = cheapest else {
        return Ok(None);
    };
    let cheapest_available = if counts.available == 0 {
        None
    } else {
        let (text, args) = cheapest_query(matching, true).into_parts();
        sqlx::query_as_with(&text, args)
            .fetch_optional(&mut *conn)
            .await?
    };
    let mut model_keys: Vec<String> = models.into_iter().map(|m| m.model_key).collect();
    model_keys.sort();
    Ok(Some(PriceStatistics {
        model_keys,
        counts,
        min_asking,
        max_asking,
        asking_sum,
        middle_asking,
        available_current_sum,
        cheapest,
        cheapest_available,
    }))
}

/// The database's plans for [`price_statistics`]' queries (aggregate, middle, cheapest, cheapest
/// available), one list of lines each; empty when `matching` selects nothing without a query.
pub async fn explain_price_statistics(
    store: &Store,
    matching: &Matching,
) -> StoreResult<Vec<Vec<String>>> {
    let Some(matching) = Resolved::of(store, matching).await? else {
        return Ok(Vec::new());
    };
    let mut plans = Vec::new();
    for sql in [
        aggregate_query(&matching),
        asking_at_query(&matching, 1, 2),
        cheapest_query(&matching, false),
        cheapest_query(&matching, true),
    ] {
        plans.push(explain(store, sql).await?);
    }
    Ok(plans)
}

/// Removes a GPU from the catalogue unless it is booked. Rows stay for the order history.
pub async fn soft_delete(store: &Store, id: &GpuId, now: Timestamp) -> StoreResult<bool> {
    let result = store
        .execute(
            Statement::new(
                "UPDATE gpus SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL AND status <> 'booked'",
            )
            .bind(now)
            .bind(id.clone()),
        )
        .await?;
    Ok(result == 1)
}

/// Records liveness; an offline GPU (which never holds an active booking) becomes available again.
/// The GPU's status afterwards, or None for an unknown GPU.
pub async fn heartbeat(
    store: &Store,
    id: &GpuId,
    now: Timestamp,
) -> StoreResult<Option<GpuStatus>> {
    let status = store
        .execute_returning_text(
            Statement::new(
                "UPDATE gpus SET last_heartbeat = $1, \
                 status = CASE WHEN status = 'offline' THEN 'available' ELSE status END \
                 WHERE id = $2 AND deleted_at IS NULL RETURNING status",
            )
            .bind(now)
            .bind(id),
        )
        .await?;
    parse_status(status)
}

pub(super) fn parse_status(status: Option<String>) -> StoreResult<Option<GpuStatus>> {
    status
        .map(|s| s.parse().map_err(super::StoreError::from))
        .transpose()
}

/// A GPU's status, `$1` its id: here and inside a booking's write on SQLite.
pub(super) const STATUS_OF_GPU: &str =
    "SELECT status FROM gpus WHERE id = $1 AND deleted_at IS NULL";

/// A GPU's status as the writer sees it now (after a lost race, say).
pub async fn status_of(store: &Store, id: &GpuId) -> StoreResult<Option<GpuStatus>> {
    let status: Option<String> = sqlx::query_scalar(STATUS_OF_GPU)
        .bind(id)
        .fetch_optional(store.writer())
        .await?;
    parse_status(status)
}

/// Available GPUs whose heartbeat went silent turn offline. Booked ones are left to the timeout policy.
pub async fn mark_silent_offline(store: &Store, cutoff: Timestamp) -> StoreResult<u64> {
    store
        .execute(silent_offline_query(store.backend(), cutoff).into_statement())
        .await
}

/// A range of `gpus_silent_heartbeats` (migrations/*/0012). SQLite is told the index: without
/// statistics it prefers the equality on status, which reads every available GPU.
fn silent_offline_query(backend: Backend, cutoff: Timestamp) -> Sql {
    let table = match backend {
        Backend::Sqlite => "gpus INDEXED BY gpus_silent_heartbeats",
        Backend::Postgres => "gpus",
    };
    let mut sql = Sql::new(format!(
        "UPDATE {table} SET status = 'offline' WHERE status = 'available' AND deleted_at IS NULL \
         AND last_heartbeat IS NOT NULL AND last_heartbeat < "
    ));
    sql.bind(cutoff);
    sql
}

/// The database's plan for [`mark_silent_offline`], one line per step (see [`explain`]).
pub async fn explain_mark_silent_offline(
    store: &Store,
    cutoff: Timestamp,
) -> StoreResult<Vec<String>> {
    explain(store, silent_offline_query(store.backend(), cutoff)).await
}

/// What a repricing reads of a GPU: its pricing facts, its current price and its status.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RepricingRow {
    pub id: GpuId,
    pub model: String,
    pub memory_gb: f64,
    pub region: Option<String>,
    #[sqlx(rename = "price_micro")]
    pub asking_price: Money,
    #[sqlx(rename = "current_price_micro")]
    pub current_price: Money,
    #[sqlx(try_from = "String")]
    pub status: GpuStatus,
}

/// The GPUs of one model as a repricing reads them, at most `limit`: seven columns instead of the
/// whole row, whose other columns (the capabilities' JSON above all) a pass decoded for nothing. In
/// registration order (the model's listing index, no sort), which is about the table's: the pass's
/// updates then walk the table's pages in order.
pub async fn for_repricing(
    store: &Store,
    model_key: &str,
    limit: i64,
) -> StoreResult<Vec<RepricingRow>> {
    Ok(sqlx::query_as(
        "SELECT id, model, memory_gb, region, price_micro, current_price_micro, status FROM gpus \
         WHERE model_key = $1 AND deleted_at IS NULL ORDER BY created_at, id LIMIT $2",
    )
    .bind(model_key)
    .bind(limit)
    .fetch_all(store.reader())
    .await?)
}

/// GPUs per price-update statement (two parameters each).
const PRICE_UPDATE_CHUNK: usize = 200;
/// GPUs per row-lock statement before a repricing on PostgreSQL.
const PRICE_LOCK_CHUNK: usize = 1_000;

/// Current prices computed by the pricing policy; one statement per chunk instead of one per GPU, all
/// in one transaction, since the writer is shared with bookings. The new prices are joined as a
/// `VALUES` list (a `CASE` over the chunk's ids would compare each row with every id: quadratic in the
/// chunk, and a full model at 100 000 GPUs is 2 000 rows).
pub async fn update_current_prices(store: &Store, prices: &[(GpuId, Money)]) -> StoreResult<()> {
    let mut statements = Vec::new();
    if store.backend() == Backend::Postgres {
        // Each chunk's triggers take the model's counts row (migration 0011) at the end of its
        // statement, and a booking takes its GPU's row, then that counts row. Were the later chunks'
        // GPU rows locked only while the counts row was already held, a booking of one of them
        // would wait for the counts row while holding what the repricing waits for: a deadlock.
        // Locking every GPU row first, in id order, keeps both in one order: GPU rows, then counts.
        let mut ids: Vec<&GpuId> = prices.iter().map(|(id, _)| id).collect();
        ids.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        for chunk in ids.chunks(PRICE_LOCK_CHUNK) {
            let mut sql = Sql::new("SELECT id FROM gpus WHERE id IN ");
            sql.bind_list(chunk.iter().map(|id| (*id).clone()))
                .push(" ORDER BY id FOR UPDATE");
            statements.push(sql.into_statement());
        }
    }
    for chunk in prices.chunks(PRICE_UPDATE_CHUNK) {
        let mut sql = Sql::new("UPDATE gpus SET current_price_micro = v.column2 FROM (VALUES ");
        for (i, (id, price)) in chunk.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" })
                .bind(id.clone())
                .push(", ")
                .bind(*price)
                .push(")");
        }
        sql.push(") AS v WHERE gpus.id = v.column1");
        statements.push(sql.into_statement());
    }
    store.execute_all(statements).await?;
    Ok(())
}

/// The model keys ever registered (a few may have no GPU left), from their small table rather than
/// a scan of the catalogue.
pub async fn model_keys(store: &Store) -> StoreResult<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT model_key FROM gpu_models ORDER BY model_key")
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
const STATUS_COUNTS: &str = "SELECT CAST(COALESCE(SUM(total), 0) AS BIGINT) AS total, \
    CAST(COALESCE(SUM(available), 0) AS BIGINT) AS available, \
    CAST(COALESCE(SUM(booked), 0) AS BIGINT) AS booked, \
    CAST(COALESCE(SUM(offline), 0) AS BIGINT) AS offline FROM gpu_model_counts";

/// Status counts of one model's GPUs, or of the whole catalogue: rows of `gpu_model_counts`, which
/// triggers keep in step with every GPU change (migrations/*/0011), instead of a count of the GPUs.
pub async fn status_counts(store: &Store, model_key: Option<&str>) -> StoreResult<StatusCounts> {
    let counts = match model_key {
        Some(key) => {
            sqlx::query_as(&format!("{STATUS_COUNTS} WHERE model_key = $1"))
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

static GET_FOR_BOOKING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, c.total, c.available, c.booked, c.offline, \
         s.anchor_price, s.anchor_unix, s.last_price, s.last_multiplier \
         FROM gpus g LEFT JOIN gpu_model_counts c ON c.model_key = g.model_key \
         LEFT JOIN gpu_price_state s ON s.gpu_id = g.id \
         WHERE g.id = $1 AND g.deleted_at IS NULL",
        qualified("g", GPU_COLUMNS)
    )
});

/// What booking a GPU reads: the GPU, its model's status counts and its pricing-guardrail state,
/// in one query. On SQLite it runs on the calling thread (see [`super::sqlite_reads`]).
pub async fn get_for_booking(
    store: &Store,
    id: &GpuId,
) -> StoreResult<Option<(Gpu, StatusCounts, Option<PriceState>)>> {
    if let Some(readers) = store.sqlite_reads() {
        return readers.read(|conn| {
            conn.prepare_cached(&GET_FOR_BOOKING)?
                .query_row([id.as_str()], |row| {
                    let (counts, state) = booking_extras(|i| row.get(i), |i| row.get(i))?;
                    Ok((sqlite_reads::gpu(row, 0)?, counts, state))
                })
                .optional()
        });
    }
    let row: Option<AnyRow> = sqlx::query(&GET_FOR_BOOKING)
        .bind(id)
        .fetch_optional(store.reader())
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (counts, state) = booking_extras(|i| row.try_get(i), |i| row.try_get(i))?;
    Ok(Some((Gpu::from_row(&row)?, counts, state)))
}

/// The columns of [`GET_FOR_BOOKING`] after the GPU's, read by position through either backend's
/// getters: its model's status counts (none yet: zero), then its price state (all or nothing).
fn booking_extras<E>(
    int: impl Fn(usize) -> Result<Option<i64>, E>,
    real: impl Fn(usize) -> Result<Option<f64>, E>,
) -> Result<(StatusCounts, Option<PriceState>), E> {
    let at = GPU_COLUMN_COUNT;
    let count = |i| int(i).map(Option::unwrap_or_default);
    let counts = StatusCounts {
        total: count(at)?,
        available: count(at + 1)?,
        booked: count(at + 2)?,
        offline: count(at + 3)?,
    };
    let state = match (real(at + 4)?, int(at + 5)?, real(at + 6)?, real(at + 7)?) {
        (Some(anchor_price), Some(anchor_unix), Some(last_price), Some(last_multiplier)) => {
            Some(PriceState {
                anchor_price,
                anchor_unix,
                last_price,
                last_multiplier,
            })
        }
        _ => None,
    };
    Ok((counts, state))
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
    fn capabilities_compare_lower_cased() {
        assert_eq!(capability_key("FP16"), "fp16");
        assert_eq!(capability_key("ÜBER"), "über");
    }

    #[test]
    fn the_middle_of_an_even_count_is_two_values() {
        assert_eq!(middle_of(1), (0, 1));
        assert_eq!(middle_of(2), (0, 2));
        assert_eq!(middle_of(5), (2, 1));
        assert_eq!(middle_of(2000), (999, 2));
    }

    #[test]
    fn capability_substrings_are_literal_like_patterns() {
        assert_eq!(capability_substring_pattern("Llama2"), "%llama2%");
        assert_eq!(capability_substring_pattern("a\"b_%"), "%a\"b\\_\\%%");
    }
}
