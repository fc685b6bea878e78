//! Bookings, which are also the orders (bills) clients and miners list.

use sqlx::FromRow;

use super::{Sql, Store};
use crate::error::Error;

pub const BOOKING_COLUMNS: &str = "id, order_id, gpu_id, gpu_model, miner_id, client_id, job_id, \
    duration_hours, duration_seconds, price_micro, total_micro, refund_micro, charged_micro, status, \
    multiplier, policy, pricing_fallback, extensions, grace_until, start_at, end_at, created_at, ended_at, \
    end_reason";

#[derive(Debug, Clone, FromRow)]
pub struct BookingRow {
    pub id: String,
    pub order_id: String,
    pub gpu_id: String,
    pub gpu_model: String,
    pub miner_id: String,
    pub client_id: String,
    pub job_id: Option<String>,
    pub duration_hours: f64,
    pub duration_seconds: i64,
    pub price_micro: i64,
    pub total_micro: i64,
    pub refund_micro: Option<i64>,
    pub charged_micro: Option<i64>,
    pub status: String,
    pub multiplier: f64,
    pub policy: String,
    /// 0 or 1 (SQLite has no boolean).
    pub pricing_fallback: i64,
    pub extensions: i64,
    pub grace_until: Option<i64>,
    pub start_at: i64,
    pub end_at: i64,
    pub created_at: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
}

/// Why a booking could not be created.
#[derive(Debug)]
pub enum BookOutcome {
    Booked,
    GpuMissing,
    GpuNotAvailable(String),
}

/// Books atomically in one statement: inserting the active booking fires `bookings_claim_gpu`, which
/// flips the GPU from `available` to `booked` or aborts the insert when it no longer is available, and
/// the partial unique index `bookings_one_active_per_gpu` rejects a second active booking whatever
/// happens around it (migrations/*/0002_booking_triggers.sql).
pub async fn create(store: &Store, booking: &BookingRow) -> Result<BookOutcome, Error> {
    let inserted = sqlx::query(&format!(
        "INSERT INTO bookings ({BOOKING_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
         $11, NULL, NULL, 'active', $12, $13, $14, 0, NULL, $15, $16, $17, NULL, NULL)"
    ))
    .bind(&booking.id)
    .bind(&booking.order_id)
    .bind(&booking.gpu_id)
    .bind(&booking.gpu_model)
    .bind(&booking.miner_id)
    .bind(&booking.client_id)
    .bind(&booking.job_id)
    .bind(booking.duration_hours)
    .bind(booking.duration_seconds)
    .bind(booking.price_micro)
    .bind(booking.total_micro)
    .bind(booking.multiplier)
    .bind(&booking.policy)
    .bind(booking.pricing_fallback)
    .bind(booking.start_at)
    .bind(booking.end_at)
    .bind(booking.created_at)
    .execute(store.writer())
    .await;
    match inserted {
        Ok(_) => {
            store.catalogue_changed();
            Ok(BookOutcome::Booked)
        }
        Err(sqlx::Error::Database(db))
            if db.is_unique_violation() || db.message().contains("gpu_not_available") =>
        {
            // Lost the race (or the GPU was never available): say what the GPU is now.
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM gpus WHERE id = $1 AND deleted_at IS NULL")
                    .bind(&booking.gpu_id)
                    .fetch_optional(store.writer())
                    .await?;
            Ok(match status {
                None => BookOutcome::GpuMissing,
                Some(status) => BookOutcome::GpuNotAvailable(status),
            })
        }
        Err(err) => Err(err.into()),
    }
}

pub async fn active_for_gpu(
    store: &Store,
    gpu_id: &str,
) -> Result<Option<BookingRow>, sqlx::Error> {
    let sql =
        format!("SELECT {BOOKING_COLUMNS} FROM bookings WHERE gpu_id = $1 AND status = 'active'");
    sqlx::query_as(&sql)
        .bind(gpu_id)
        .fetch_optional(store.reader())
        .await
}

/// Active bookings for the given GPUs, in one round trip.
pub async fn active_for_gpus(
    store: &Store,
    gpu_ids: &[&str],
) -> Result<Vec<BookingRow>, sqlx::Error> {
    if gpu_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(format!(
        "SELECT {BOOKING_COLUMNS} FROM bookings WHERE status = 'active' AND gpu_id IN ("
    ));
    for (i, id) in gpu_ids.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(id.to_string());
    }
    sql.push(")");
    let (text, args) = sql.into_parts();
    sqlx::query_as_with(&text, args)
        .fetch_all(store.reader())
        .await
}

/// How a booking ends.
#[derive(Debug, Clone)]
pub struct Ending<'a> {
    pub booking_id: &'a str,
    pub status: &'static str,
    pub ended_at: i64,
    pub refund_micro: i64,
    pub charged_micro: i64,
    pub reason: &'a str,
    /// A GPU whose last heartbeat is older than this goes `offline` instead of `available`.
    pub heartbeat_cutoff: i64,
    /// Optimistic check: the end time the caller based its decision on.
    pub expected_end_at: i64,
}

/// Ends an active booking and frees its GPU (trigger `bookings_free_gpu`), exactly once: the update
/// only matches while the booking is still active and unchanged, so of two replicas (or a sweeper and
/// a release) racing, one wins.
pub async fn end(store: &Store, ending: &Ending<'_>) -> Result<bool, sqlx::Error> {
    let ended = sqlx::query(
        "UPDATE bookings SET status = $1, ended_at = $2, refund_micro = $3, charged_micro = $4, \
         end_reason = $5, heartbeat_cutoff = $6 WHERE id = $7 AND status = 'active' AND end_at = $8",
    )
    .bind(ending.status)
    .bind(ending.ended_at)
    .bind(ending.refund_micro)
    .bind(ending.charged_micro)
    .bind(ending.reason)
    .bind(ending.heartbeat_cutoff)
    .bind(ending.booking_id)
    .bind(ending.expected_end_at)
    .execute(store.writer())
    .await?;
    if ended.rows_affected() == 0 {
        return Ok(false);
    }
    store.catalogue_changed();
    Ok(true)
}

/// Moves an active booking's end and total (an extension) or sets a grace period, guarded like [`end`]
/// and on the number of changes seen, so a decision is applied once even when replicas race.
pub async fn reschedule(
    store: &Store,
    booking: &BookingRow,
    new_end_at: i64,
    new_total_micro: i64,
    grace_until: Option<i64>,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE bookings SET end_at = $1, total_micro = $2, grace_until = $3, extensions = extensions + 1 \
         WHERE id = $4 AND status = 'active' AND end_at = $5 AND extensions = $6",
    )
    .bind(new_end_at)
    .bind(new_total_micro)
    .bind(grace_until)
    .bind(&booking.id)
    .bind(booking.end_at)
    .bind(booking.extensions)
    .execute(store.writer())
    .await?;
    store.catalogue_changed();
    Ok(result.rows_affected() == 1)
}

/// An active booking and the facts the timeout policy needs about its GPU.
#[derive(Debug, Clone, FromRow)]
pub struct ActiveBooking {
    #[sqlx(flatten)]
    pub booking: BookingRow,
    pub last_heartbeat: Option<i64>,
}

/// Active bookings, soonest end first, for the sweeper. No locks are held: each decision is applied
/// with an optimistic check, so replicas sweeping the same rows cannot apply one twice.
pub async fn active(store: &Store, limit: i64) -> Result<Vec<ActiveBooking>, sqlx::Error> {
    let columns = BOOKING_COLUMNS
        .split(", ")
        .map(|c| format!("b.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {columns}, g.last_heartbeat FROM bookings b JOIN gpus g ON g.id = b.gpu_id \
         WHERE b.status = 'active' ORDER BY b.end_at LIMIT $1"
    );
    sqlx::query_as(&sql)
        .bind(limit)
        .fetch_all(store.reader())
        .await
}

/// Which orders a caller may see.
#[derive(Debug, Clone)]
pub enum OrderScope {
    All,
    /// Orders the principal placed as a client, or on GPUs it owns as a miner.
    Principal {
        id: String,
        as_client: bool,
        as_miner: bool,
    },
}

pub async fn orders(
    store: &Store,
    scope: &OrderScope,
    status: Option<&'static str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<BookingRow>, sqlx::Error> {
    let mut sql = Sql::new(format!(
        "SELECT {BOOKING_COLUMNS} FROM bookings WHERE 1 = 1"
    ));
    if let OrderScope::Principal {
        id,
        as_client,
        as_miner,
    } = scope
    {
        match (as_client, as_miner) {
            (true, true) => {
                sql.push(" AND (client_id = ")
                    .bind(id.clone())
                    .push(" OR miner_id = ")
                    .bind(id.clone())
                    .push(")");
            }
            (true, false) => {
                sql.push(" AND client_id = ").bind(id.clone());
            }
            (false, true) => {
                sql.push(" AND miner_id = ").bind(id.clone());
            }
            (false, false) => {
                sql.push(" AND 1 = 0");
            }
        }
    }
    if let Some(status) = status {
        sql.push(" AND status = ").bind(status.to_owned());
    }
    sql.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .bind(limit)
        .push(" OFFSET ")
        .bind(offset);
    let (text, args) = sql.into_parts();
    sqlx::query_as_with(&text, args)
        .fetch_all(store.reader())
        .await
}

/// Bookings of GPUs of one model that started at or after `since`.
pub async fn started_since(store: &Store, model_key: &str, since: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM bookings b JOIN gpus g ON g.id = b.gpu_id WHERE g.model_key = $1 AND b.start_at >= $2",
    )
    .bind(model_key)
    .bind(since)
    .fetch_one(store.reader())
    .await
}

pub async fn count_active(store: &Store) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM bookings WHERE status = 'active'")
        .fetch_one(store.reader())
        .await
}

/// Whether `client_id` has a booking on the GPU that completed (or was at least partly charged).
pub async fn client_has_used_gpu(
    store: &Store,
    client_id: &str,
    gpu_id: &str,
) -> Result<bool, sqlx::Error> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM bookings WHERE client_id = $1 AND gpu_id = $2 AND status <> 'active' \
         AND (status = 'completed' OR charged_micro > 0)",
    )
    .bind(client_id)
    .bind(gpu_id)
    .fetch_one(store.reader())
    .await?;
    Ok(count > 0)
}
