//! SQLite point reads on the calling thread.
//!
//! sqlx runs every SQLite connection on a worker thread of its own, so each read is a hand-off to
//! that thread and a wake-up back: two context switches. A booking and a release each make one
//! read by key, and on a machine whose cores are busy serving requests those switches cost more
//! than the read (the sqlx reader threads were a sixth of the server's CPU samples in the book+release
//! cycle). The reads on that path run here instead, on the request's own thread, through rusqlite
//! connections that are lent out one caller at a time.
//!
//! A read by key takes tens of microseconds, and in WAL mode a reader never waits for the writer,
//! so it holds the async worker no longer than the hand-off did. Everything else (lists, scans,
//! the decision log's joins) stays on sqlx's readers.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::types::{FromSql, FromSqlResult, Type, ValueRef};
use rusqlite::{Connection, Row};

use super::{StoreError, StoreResult};
use crate::domain::{
    Booking, BookingId, Capabilities, DecisionId, Gpu, GpuId, Money, OrderId, PrincipalId,
    Timestamp,
};

/// Idle connections kept for the next reads: one per thread that reads at once (the async workers)
/// needs no more; a burst beyond them opens connections that are closed after their read.
const IDLE_CONNECTIONS: usize = 8;

/// Read connections to one SQLite file.
pub(super) struct SqliteReaders {
    path: PathBuf,
    setup: String,
    idle: Mutex<Vec<Connection>>,
    /// Set by [`Self::close`], with the store's pools.
    closed: AtomicBool,
}

impl std::fmt::Debug for SqliteReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReaders")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteReaders {
    /// `setup`: the pragmas every connection to the file runs (its journal mode first).
    pub(super) fn new(path: &Path, setup: String) -> Self {
        Self {
            path: path.to_owned(),
            setup,
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        }
    }

    /// Closes the idle connections; reads after this fail as they do on a closed sqlx pool.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.lock_idle().clear();
    }

    /// Runs `read` on an idle connection, or on a new one when all are lent out.
    pub(super) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> StoreResult<T> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Query(sqlx::Error::PoolClosed));
        }
        let idle = self.lock_idle().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let outcome = read(&conn);
        // A connection whose read failed may be mid-statement or broken: it is not lent again.
        if outcome.is_ok() && !self.closed.load(Ordering::Acquire) {
            let mut idle = self.lock_idle();
            if idle.len() < IDLE_CONNECTIONS {
                idle.push(conn);
            }
        }
        Ok(outcome?)
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // The list holds no invariant a panicking holder could break.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = super::sqlite_connection(&self.path, &self.setup)?;
        // These connections only read; a bug that wrote through one would bypass group commit.
        conn.execute_batch("PRAGMA query_only = ON;")?;
        Ok(conn)
    }
}

/// Domain types read through their stored form: micro-units and unix microseconds as integers, ids
/// as their text.
macro_rules! from_stored {
    ($stored:ty => $($ty:ty: $into:path),+ $(,)?) => {$(
        impl FromSql for $ty {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                <$stored>::column_result(value).map($into)
            }
        }
    )+};
}
from_stored!(i64 => Money: Money::from_micros, Timestamp: Timestamp::from_micros);
from_stored!(String =>
    GpuId: GpuId::from,
    PrincipalId: PrincipalId::from,
    BookingId: BookingId::from,
    OrderId: OrderId::from,
    DecisionId: DecisionId::from,
);

/// A column converted through the domain type's own checked conversion from its stored form.
fn converted<S, T>(row: &Row<'_>, index: usize, stored: Type) -> rusqlite::Result<T>
where
    S: FromSql,
    T: TryFrom<S>,
    T::Error: std::fmt::Display,
{
    T::try_from(row.get::<_, S>(index)?).map_err(|err| {
        rusqlite::Error::FromSqlConversionFailure(index, stored, err.to_string().into())
    })
}

/// A GPU from `store::gpus::GPU_COLUMNS`, in their order, starting at column `at`.
pub(super) fn gpu(row: &Row<'_>, at: usize) -> rusqlite::Result<Gpu> {
    Ok(Gpu {
        id: row.get(at)?,
        miner_id: row.get(at + 1)?,
        model: row.get(at + 2)?,
        model_key: row.get(at + 3)?,
        memory_gb: row.get(at + 4)?,
        cuda_version: row.get(at + 5)?,
        cuda_cores: row.get(at + 6)?,
        compute_capability: row.get(at + 7)?,
        region: row.get(at + 8)?,
        description: row.get(at + 9)?,
        capabilities: converted::<String, Capabilities>(row, at + 10, Type::Text)?,
        asking_price: row.get(at + 11)?,
        current_price: row.get(at + 12)?,
        status: converted::<String, _>(row, at + 13, Type::Text)?,
        total_bookings: row.get(at + 14)?,
        rating_sum: row.get(at + 15)?,
        rating_count: row.get(at + 16)?,
        last_heartbeat: row.get(at + 17)?,
        created_at: row.get(at + 18)?,
    })
}

/// A booking from `store::bookings::BOOKING_COLUMNS`, in their order.
pub(super) fn booking(row: &Row<'_>) -> rusqlite::Result<Booking> {
    Ok(Booking {
        id: row.get(0)?,
        order_id: row.get(1)?,
        gpu_id: row.get(2)?,
        gpu_model: row.get(3)?,
        miner_id: row.get(4)?,
        client_id: row.get(5)?,
        job_id: row.get(6)?,
        duration: converted::<i64, _>(row, 7, Type::Integer)?,
        price_per_hour: row.get(8)?,
        total: row.get(9)?,
        refund: row.get(10)?,
        charged: row.get(11)?,
        status: converted::<String, _>(row, 12, Type::Text)?,
        multiplier: row.get(13)?,
        policy: row.get(14)?,
        priced_by: converted::<i64, _>(row, 15, Type::Integer)?,
        extensions: row.get(16)?,
        grace_until: row.get(17)?,
        start_at: row.get(18)?,
        end_at: row.get(19)?,
        created_at: row.get(20)?,
        ended_at: row.get(21)?,
        end_reason: row.get(22)?,
        pricing_decision: row.get(23)?,
        timeout_decision: row.get(24)?,
    })
}
