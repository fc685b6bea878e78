//! Bookings, which are also the orders (bills) clients and miners list.

use std::sync::LazyLock;

use rusqlite::OptionalExtension;

use super::sql::{Sql, qualified};
use super::{Statement, Store, StoreResult, gpus, sqlite_reads};
use crate::domain::{
    Booking, BookingId, BookingStatus, DecisionId, GpuId, GpuStatus, Money, PriceState,
    PrincipalId, Timestamp,
};

const BOOKING_COLUMNS: &str = "id, order_id, gpu_id, gpu_model, miner_id, client_id, job_id, \
    duration_seconds, price_micro, total_micro, refund_micro, charged_micro, status, \
    multiplier, policy, pricing_fallback, extensions, grace_until, start_at, end_at, created_at, ended_at, \
    end_reason, pricing_decision, timeout_decision";

/// A GPU's active booking. On SQLite it is read on the calling thread (see [`super::sqlite_reads`]).
static ACTIVE_FOR_GPU: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {BOOKING_COLUMNS} FROM bookings WHERE gpu_id = $1 AND status = 'active'")
});

/// Why a booking could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookOutcome {
    Booked,
    GpuMissing,
    GpuNotAvailable(GpuStatus),
}

/// The active booking's row: `$1`..`$17` are bound by [`bind_booking`]. Its GPU's model key is
/// copied from the GPU's row (the booking facts count bookings per model through it).
static INSERT_BOOKING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO bookings ({BOOKING_COLUMNS}, model_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
         $9, $10, NULL, NULL, 'active', $11, $12, $13, 0, NULL, $14, $15, $16, NULL, NULL, $17, NULL, \
         (SELECT model_key FROM gpus WHERE id = $3))"
    )
});

/// The booking and its quote's guardrail state in one statement (PostgreSQL): a data-modifying CTE
/// upserts the state from the inserted row, so a failed insert (trigger or unique index) writes
/// neither.
static INSERT_BOOKING_WITH_STATE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH booked AS ({} RETURNING gpu_id, created_at) {}",
        *INSERT_BOOKING,
        super::price_state::upsert_from_booked()
    )
});

fn bind_booking(statement: Statement, booking: &Booking) -> Statement {
    statement
        .bind(&booking.id)
        .bind(&booking.order_id)
        .bind(&booking.gpu_id)
        .bind(&booking.gpu_model)
        .bind(&booking.miner_id)
        .bind(&booking.client_id)
        .bind(&booking.job_id)
        .bind(booking.duration.seconds())
        .bind(booking.price_per_hour)
        .bind(booking.total)
        .bind(booking.multiplier)
        .bind(&booking.policy)
        .bind(booking.priced_by.as_flag())
        .bind(booking.start_at)
        .bind(booking.end_at)
        .bind(booking.created_at)
        .bind(&booking.pricing_decision)
}

/// The insert failed because the GPU is taken (or was never available): a lost race, not an error.
fn lost_the_gpu(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db)
        if db.is_unique_violation() || db.message().contains("gpu_not_available"))
}

/// [`lost_the_gpu`] on SQLite's write queue.
fn lost_the_gpu_sqlite(err: &rusqlite::Error) -> bool {
    match err {
        rusqlite::Error::SqliteFailure(failure, message) => {
            failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || message
                    .as_deref()
                    .is_some_and(|m| m.contains("gpu_not_available"))
        }
        _ => false,
    }
}

/// Books atomically: inserting the active booking fires `bookings_claim_gpu`, which flips the GPU from
/// `available` to `booked` or aborts the insert when it no longer is available, and the partial unique
/// index `bookings_one_active_per_gpu` rejects a second active booking whatever happens around it
/// (migrations/*/0002_booking_triggers.sql). The booked quote's guardrail state, when the pricing
/// policy returned one, is kept for the GPU in the same transaction.
///
/// On SQLite the booking is one write of a group commit; on PostgreSQL it is one statement (one round
/// trip), the guardrail state written by the same statement.
pub async fn create(
    store: &Store,
    booking: &Booking,
    price_state: Option<&PriceState>,
) -> StoreResult<BookOutcome> {
    let Some(queue) = store.sqlite_writes() else {
        return create_in_one_statement(store, booking, price_state).await;
    };
    let insert = bind_booking(Statement::new(INSERT_BOOKING.as_str()), booking);
    // Bound like the booking (it uses the GPU and the creation time of it) and the state after it.
    let state = price_state.map(|state| {
        super::price_state::bind_state(
            bind_booking(
                Statement::new(super::price_state::upsert_for_booking()),
                booking,
            ),
            state,
        )
    });
    let gpu_id = booking.gpu_id.clone();
    // In a savepoint of the group's: a failed state leaves no booking behind.
    queue
        .write(false, move |conn| {
            if let Err(err) = insert.run(conn) {
                if lost_the_gpu_sqlite(&err) {
                    // SQLite aborted the failed statement alone; the GPU's status as this transaction
                    // sees it includes the writes grouped before this one.
                    return Ok(lost_outcome(status_in_sqlite(conn, &gpu_id)?));
                }
                return Err(err.into());
            }
            if let Some(state) = &state {
                state.run(conn)?;
            }
            Ok(BookOutcome::Booked)
        })
        .await
}

/// A GPU's status inside the group's transaction on SQLite.
fn status_in_sqlite(conn: &rusqlite::Connection, gpu_id: &GpuId) -> StoreResult<Option<GpuStatus>> {
    let query = Statement::new(gpus::STATUS_OF_GPU).bind(gpu_id);
    let mut prepared = query.prepare(conn)?;
    let mut rows = prepared.raw_query();
    let status: Option<String> = match rows.next()? {
        Some(row) => Some(row.get(0)?),
        None => None,
    };
    gpus::parse_status(status)
}

async fn create_in_one_statement(
    store: &Store,
    booking: &Booking,
    price_state: Option<&PriceState>,
) -> StoreResult<BookOutcome> {
    let statement = match price_state {
        None => bind_booking(Statement::new(INSERT_BOOKING.as_str()), booking),
        Some(state) => super::price_state::bind_state(
            bind_booking(Statement::new(INSERT_BOOKING_WITH_STATE.as_str()), booking),
            state,
        ),
    };
    let executed = sqlx::query_with(statement.text(), statement.any_arguments())
        .execute(store.writer())
        .await;
    match executed {
        Ok(_) => Ok(BookOutcome::Booked),
        Err(err) if lost_the_gpu(&err) => {
            Ok(lost_outcome(gpus::status_of(store, &booking.gpu_id).await?))
        }
        Err(err) => Err(err.into()),
    }
}

fn lost_outcome(status: Option<GpuStatus>) -> BookOutcome {
    match status {
        None => BookOutcome::GpuMissing,
        Some(status) => BookOutcome::GpuNotAvailable(status),
    }
}

pub async fn active_for_gpu(store: &Store, gpu_id: &GpuId) -> StoreResult<Option<Booking>> {
    if let Some(readers) = store.sqlite_reads() {
        return readers.read(|conn| {
            conn.prepare_cached(&ACTIVE_FOR_GPU)?
                .query_row([gpu_id.as_str()], sqlite_reads::booking)
                .optional()
        });
    }
    Ok(sqlx::query_as(&ACTIVE_FOR_GPU)
        .bind(gpu_id)
        .fetch_optional(store.reader())
        .await?)
}

/// How a booking ends.
#[derive(Debug, Clone)]
pub struct Ending<'a> {
    pub booking_id: &'a BookingId,
    pub status: BookingStatus,
    pub ended_at: Timestamp,
    pub refund: Money,
    pub charged: Money,
    pub reason: &'a str,
    /// A GPU whose last heartbeat is older than this goes `offline` instead of `available`.
    pub heartbeat_cutoff: Timestamp,
    /// Optimistic check: the end time the caller based its decision on.
    pub expected_end_at: Timestamp,
    /// The booking-timeout decision that ends it (None: a release).
    pub decision: Option<&'a DecisionId>,
}

/// Ends an active booking and frees its GPU (trigger `bookings_free_gpu`), exactly once: the update
/// only matches while the booking is still active and unchanged, so of two replicas (or a sweeper and
/// a release) racing, one wins.
pub async fn end(store: &Store, ending: &Ending<'_>) -> StoreResult<bool> {
    let ended = store.execute(Statement::new(
        "UPDATE bookings SET status = $1, ended_at = $2, refund_micro = $3, charged_micro = $4, \
         end_reason = $5, heartbeat_cutoff = $6, timeout_decision = COALESCE($9, timeout_decision) \
         WHERE id = $7 AND status = 'active' AND end_at = $8",
    )
    .bind(ending.status.as_str())
    .bind(ending.ended_at)
    .bind(ending.refund)
    .bind(ending.charged)
    .bind(ending.reason.to_owned())
    .bind(ending.heartbeat_cutoff)
    .bind(ending.booking_id.clone())
    .bind(ending.expected_end_at)
    .bind(ending.decision.cloned()))
    .await?;
    Ok(ended == 1)
}

/// Moves an active booking's end and total (an extension) or sets a grace period, guarded like [`end`]
/// and on the number of changes seen, so a decision is applied once even when replicas race.
pub async fn reschedule(
    store: &Store,
    booking: &Booking,
    new_end_at: Timestamp,
    new_total: Money,
    grace_until: Option<Timestamp>,
    decision: Option<&DecisionId>,
) -> StoreResult<bool> {
    let result = store.execute(Statement::new(
        "UPDATE bookings SET end_at = $1, total_micro = $2, grace_until = $3, extensions = extensions + 1, \
         timeout_decision = COALESCE($7, timeout_decision) \
         WHERE id = $4 AND status = 'active' AND end_at = $5 AND extensions = $6",
    )
    .bind(new_end_at)
    .bind(new_total)
    .bind(grace_until)
    .bind(booking.id.clone())
    .bind(booking.end_at)
    .bind(booking.extensions)
    .bind(decision.cloned()))
    .await?;
    Ok(result == 1)
}

/// An active booking and its GPU's last heartbeat, for the timeout policy.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ActiveBooking {
    #[sqlx(flatten)]
    pub booking: Booking,
    pub last_heartbeat: Option<Timestamp>,
}

/// Active bookings, soonest end first, for the sweeper. No locks are held: each decision is applied
/// with an optimistic check, so replicas sweeping the same rows cannot apply one twice.
pub async fn active(store: &Store, limit: i64) -> StoreResult<Vec<ActiveBooking>> {
    let sql = format!(
        "SELECT {}, g.last_heartbeat FROM bookings b JOIN gpus g ON g.id = b.gpu_id \
         WHERE b.status = 'active' ORDER BY b.end_at LIMIT $1",
        qualified("b", BOOKING_COLUMNS)
    );
    Ok(sqlx::query_as(&sql)
        .bind(limit)
        .fetch_all(store.reader())
        .await?)
}

/// Which orders a caller may see.
#[derive(Debug, Clone)]
pub enum OrderScope {
    All,
    /// Orders the principal placed as a client, or on GPUs it owns as a miner.
    Principal {
        id: PrincipalId,
        as_client: bool,
        as_miner: bool,
    },
}

/// Newest first.
pub async fn orders(
    store: &Store,
    scope: &OrderScope,
    status: Option<BookingStatus>,
    page: super::gpus::Page,
) -> StoreResult<Vec<Booking>> {
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
        sql.push(" AND status = ").bind(status.as_str().to_owned());
    }
    sql.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .bind(page.limit)
        .push(" OFFSET ")
        .bind(page.offset);
    let (text, args) = sql.into_parts();
    Ok(sqlx::query_as_with(&text, args)
        .fetch_all(store.reader())
        .await?)
}

/// Bookings of GPUs of the given models that started at or after `since`: a range of
/// `bookings_model_start` per model, whatever the size of the catalogue.
pub async fn started_since(
    store: &Store,
    model_keys: &[String],
    since: Timestamp,
) -> StoreResult<i64> {
    match started_since_query(model_keys, since) {
        None => Ok(0),
        Some(sql) => {
            let (text, args) = sql.into_parts();
            Ok(sqlx::query_scalar_with(&text, args)
                .fetch_one(store.reader())
                .await?)
        }
    }
}

fn started_since_query(model_keys: &[String], since: Timestamp) -> Option<Sql> {
    if model_keys.is_empty() {
        return None;
    }
    let mut sql = Sql::new("SELECT COUNT(*) FROM bookings WHERE model_key IN ");
    sql.bind_list(model_keys.iter().cloned())
        .push(" AND start_at >= ")
        .bind(since);
    Some(sql)
}

/// The database's plan for [`started_since`], one line per step (see `gpus::explain`).
pub async fn explain_started_since(
    store: &Store,
    model_keys: &[String],
    since: Timestamp,
) -> StoreResult<Vec<String>> {
    match started_since_query(model_keys, since) {
        None => Ok(Vec::new()),
        Some(sql) => gpus::explain(store, sql).await,
    }
}

pub async fn count_active(store: &Store) -> StoreResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM bookings WHERE status = 'active'")
            .fetch_one(store.reader())
            .await?,
    )
}

/// Whether `client_id` has a booking on the GPU that completed (or was at least partly charged).
pub async fn client_has_used_gpu(
    store: &Store,
    client_id: &PrincipalId,
    gpu_id: &GpuId,
) -> StoreResult<bool> {
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
