//! SQLite reads on the calling thread.
//!
//! sqlx runs every SQLite connection on a worker thread of its own, so each read is a hand-off to
//! that thread and a wake-up back: two context switches, which on a machine whose cores are busy
//! serving requests cost more than the read (the sqlx reader threads were a sixth of the server's
//! CPU samples in the book+release cycle, and about a third in a catalogue list). The booking path's
//! point reads, a GPU's details and the catalogue's pages run here instead, on the request's own
//! thread, through rusqlite connections that are lent out one caller at a time.
//!
//! In WAL mode a reader never waits for the writer, so a read by key or an indexed page holds the
//! async worker for tens of microseconds, no longer than the hand-off did. A query that may read
//! much more (a list whose filter the index order cannot serve) runs with a budget of SQLite
//! virtual-machine instructions ([`SqliteReaders::read_bounded`]); past it the read stops and the
//! caller runs it again on sqlx's readers, so no request holds an async worker for long.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::types::{FromSql, FromSqlResult, Type, ValueRef};
use rusqlite::{Connection, ErrorCode, Row};

use super::{StoreError, StoreResult};
use crate::domain::{
    Booking, BookingId, Capabilities, DecisionId, Gpu, GpuId, Money, OrderId, PrincipalId,
    Timestamp,
};

/// Idle connections kept for the next reads: one per thread that reads at once (the async workers)
/// needs no more; a burst beyond them opens connections that are closed after their read.
const IDLE_CONNECTIONS: usize = 8;

/// SQLite calls a connection's progress handler after about this many virtual-machine instructions.
const INSTRUCTIONS_PER_TICK: u32 = 1_000;

/// The instructions a bounded read may run on the calling thread before it is handed to sqlx: an
/// indexed page of the catalogue takes under a thousand, and this many take well under a
/// millisecond.
pub(super) const SHORT_READ_INSTRUCTIONS: u32 = 20_000;

/// Prepared statements kept per connection: the catalogue's filters combine into more distinct
/// queries than rusqlite's default of 16.
const CACHED_STATEMENTS: usize = 64;

/// What a bounded read came to.
#[derive(Debug)]
pub(super) enum Bounded<T> {
    Done(T),
    /// It ran past its budget and was stopped; nothing of it is kept.
    TooLong,
}

/// A connection with the budget its progress handler counts down.
struct ReadConnection {
    conn: Connection,
    /// Progress-handler ticks left to the read in progress; at zero SQLite interrupts it.
    ticks_left: Arc<AtomicU32>,
}

/// Read connections to one SQLite file.
pub(super) struct SqliteReaders {
    path: PathBuf,
    setup: String,
    idle: Mutex<Vec<ReadConnection>>,
    /// Set by [`Self::close`], with the store's pools.
    closed: AtomicBool,
    /// Bounded reads stopped at their budget (and run again on sqlx's readers).
    long_reads: AtomicU64,
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
            long_reads: AtomicU64::new(0),
        }
    }

    /// Closes the idle connections; reads after this fail as they do on a closed sqlx pool.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.lock_idle().clear();
    }

    /// Runs `read` on an idle connection, or on a new one when all are lent out, however long it
    /// takes: for reads by key.
    pub(super) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> StoreResult<T> {
        match self.read_for_ticks(u32::MAX, read)? {
            Bounded::Done(value) => Ok(value),
            // u32::MAX ticks are about 4 * 10^12 instructions: hours of work.
            Bounded::TooLong => Err(StoreError::Query(sqlx::Error::Protocol(
                "an unbounded SQLite read ran out of its budget".into(),
            ))),
        }
    }

    /// Runs `read` for at most about `instructions` SQLite virtual-machine instructions; past them
    /// SQLite interrupts it and this returns [`Bounded::TooLong`].
    pub(super) fn read_bounded<T>(
        &self,
        instructions: u32,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> StoreResult<Bounded<T>> {
        self.read_for_ticks(instructions.div_ceil(INSTRUCTIONS_PER_TICK), read)
    }

    /// Runs `read` with `ticks` calls of the progress handler to spend.
    fn read_for_ticks<T>(
        &self,
        ticks: u32,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> StoreResult<Bounded<T>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Query(sqlx::Error::PoolClosed));
        }
        let idle = self.lock_idle().pop();
        let lent = match idle {
            Some(lent) => lent,
            None => self.open()?,
        };
        lent.ticks_left.store(ticks, Ordering::Relaxed);
        let outcome = match read(&lent.conn) {
            Ok(value) => Ok(Bounded::Done(value)),
            Err(rusqlite::Error::SqliteFailure(failure, _))
                if failure.code == ErrorCode::OperationInterrupted =>
            {
                self.long_reads.fetch_add(1, Ordering::Relaxed);
                Ok(Bounded::TooLong)
            }
            Err(err) => Err(err),
        };
        // A connection whose read failed may be mid-statement or broken: it is not lent again. An
        // interrupted statement is reset when its handle drops, so that connection is fine.
        if outcome.is_ok() && !self.closed.load(Ordering::Acquire) {
            let mut idle = self.lock_idle();
            if idle.len() < IDLE_CONNECTIONS {
                idle.push(lent);
            }
        }
        Ok(outcome?)
    }

    /// Bounded reads stopped at their budget so far.
    pub(super) fn long_reads(&self) -> u64 {
        self.long_reads.load(Ordering::Relaxed)
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<ReadConnection>> {
        // The list holds no invariant a panicking holder could break.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn open(&self) -> rusqlite::Result<ReadConnection> {
        let conn = super::sqlite_connection(&self.path, &self.setup)?;
        // These connections only read; a bug that wrote through one would bypass group commit.
        conn.execute_batch("PRAGMA query_only = ON;")?;
        conn.set_prepared_statement_cache_capacity(CACHED_STATEMENTS);
        let ticks_left = Arc::new(AtomicU32::new(u32::MAX));
        let counter = Arc::clone(&ticks_left);
        // Installed once per connection, so a read sets a number instead of boxing a handler.
        conn.progress_handler(
            i32::try_from(INSTRUCTIONS_PER_TICK).unwrap_or(i32::MAX),
            Some(move || {
                let left = counter.load(Ordering::Relaxed);
                counter.store(left.saturating_sub(1), Ordering::Relaxed);
                left == 0
            }),
        );
        Ok(ReadConnection { conn, ticks_left })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn readers() -> (tempfile::TempDir, SqliteReaders) {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("reads.db");
        drop(Connection::open(&path).expect("creates the file"));
        let readers = SqliteReaders::new(&path, "PRAGMA journal_mode = WAL;".to_owned());
        (dir, readers)
    }

    /// Sums 1..=n, n steps of a recursive query: several instructions each.
    fn sum_to(conn: &Connection, n: i64) -> rusqlite::Result<i64> {
        conn.query_row(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
             SELECT SUM(i) FROM n",
            [n],
            |row| row.get(0),
        )
    }

    #[test]
    fn a_bounded_read_stops_at_its_budget_and_its_connection_serves_the_next() {
        let (_dir, readers) = readers();
        let read = readers
            .read_bounded(SHORT_READ_INSTRUCTIONS, |conn| sum_to(conn, 100_000))
            .expect("stopped, not failed");
        assert!(matches!(read, Bounded::TooLong), "{read:?}");
        assert_eq!(readers.long_reads(), 1);
        // The stopped connection went back idle and reads again, with a fresh budget.
        assert_eq!(readers.lock_idle().len(), 1);
        let read = readers
            .read_bounded(SHORT_READ_INSTRUCTIONS, |conn| sum_to(conn, 10))
            .expect("reads");
        assert!(matches!(read, Bounded::Done(55)), "{read:?}");
        assert_eq!(readers.lock_idle().len(), 1);
        assert_eq!(readers.long_reads(), 1);
    }

    #[test]
    fn an_unbounded_read_runs_to_its_end_after_a_bounded_one_was_stopped() {
        let (_dir, readers) = readers();
        let stopped = readers
            .read_bounded(1, |conn| sum_to(conn, 100_000))
            .expect("stopped");
        assert!(matches!(stopped, Bounded::TooLong));
        let sum = readers.read(|conn| sum_to(conn, 100_000)).expect("reads");
        assert_eq!(sum, 5_000_050_000);
    }
}
