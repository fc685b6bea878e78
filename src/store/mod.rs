//! Persistence: sqlx over SQLite (embedded default) or PostgreSQL (scale-out), through the `Any` driver so
//! every query is written once. SQL placeholders are `$n`, which both backends accept. Writes are
//! [`Statement`]s of plain values, which SQLite's write queue runs itself through rusqlite (see
//! [`group_commit`]) and PostgreSQL through sqlx.
//!
//! Times are unix microseconds and money integer micro-units in every table.

pub mod bids;
pub mod bookings;
mod checkpoint;
mod decision_db;
pub mod decisions;
pub mod gpus;
mod group_commit;
pub mod idempotency;
mod log_writes;
pub mod price_state;
pub mod prices;
pub mod reviews;
mod sql;
mod sqlite_reads;
mod statement;

pub use gpus::{GpuFilter, GpuOrder, Matching, Page};
pub use group_commit::WriteStats;
pub use statement::{Bind, Statement};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, Connection, Executor, Transaction};

use crate::config::{DatabaseConfig, SqliteSynchronous, redact_url};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot create the directory for database {url}: {source}")]
    CreateDir { url: String, source: std::io::Error },
    #[error("migrating database {url} failed: {source}")]
    Migrate {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// A statement run through rusqlite failed: one of the write queue's, or one of the booking
    /// path's reads ([`sqlite_reads`]).
    #[error("database statement failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The commit of a group of writes failed: none of them is on disk.
    #[error("database commit failed: {0}")]
    Commit(Arc<rusqlite::Error>),
    /// The write's outcome never came: the SQLite write queue stopped, or the write panicked (and
    /// was rolled back).
    #[error("the database write was abandoned")]
    WriteAbandoned,
    /// A row holds a value its type does not allow (written by hand, or by a newer version).
    #[error("database holds an invalid value: {0}")]
    InvalidValue(String),
}

impl From<crate::domain::UnknownStatus> for StoreError {
    fn from(err: crate::domain::UnknownStatus) -> Self {
        Self::InvalidValue(format!("{err}, found {:?}", err.found))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connection pools. SQLite allows one writer at a time, so it gets a single-connection writer pool
/// (writers queue in the pool instead of failing with SQLITE_BUSY) beside a pool of readers, and its
/// writes go through the group-commit queue ([`Store::write`]); on PostgreSQL both pools are the same.
#[derive(Debug, Clone)]
pub struct Store {
    reader: AnyPool,
    writer: AnyPool,
    writes: Option<group_commit::WriteQueue>,
    /// SQLite: the booking path's point reads, run on the calling thread ([`sqlite_reads`]).
    sqlite_reads: Option<Arc<sqlite_reads::SqliteReaders>>,
    backend: Backend,
    url: String,
    /// SQLite: the decision log, in a file of its own (see [`decision_db`]); `None` when it shares
    /// this database (PostgreSQL, which has many writers).
    decision_log: Option<Arc<DecisionLogFile>>,
    /// The private directory of an "in-memory" SQLite database, removed with the last clone.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "held to be removed when the last clone is dropped"
        )
    )]
    scratch: Option<Arc<tempfile::TempDir>>,
}

/// The decision log's own SQLite file: its writer, and the market's readers (which attach it).
#[derive(Debug)]
struct DecisionLogFile {
    store: Store,
    path: PathBuf,
}

impl Store {
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, StoreError> {
        install_default_drivers();
        let url = config.url.expose().to_owned();
        let redacted = redact_url(&url);
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let connect_err = |source| StoreError::Connect {
            url: redacted.clone(),
            source,
        };
        let store = match backend {
            Backend::Postgres => {
                let pool = pool_options(config, config.max_connections)
                    .connect(&url)
                    .await
                    .map_err(connect_err)?;
                Self {
                    reader: pool.clone(),
                    writer: pool,
                    writes: None,
                    sqlite_reads: None,
                    backend,
                    url: redacted,
                    decision_log: None,
                    scratch: None,
                }
            }
            Backend::Sqlite => {
                // An in-memory database exists once per connection, and the writes run on a
                // connection of their own: "in memory" is a file in a private directory that goes
                // when the store does.
                let (url, file, scratch) = match sqlite_file(&url).map(Path::to_owned) {
                    Some(file) => (sqlite_url_creating(&url), file, None),
                    None => {
                        let dir = tempfile::Builder::new()
                            .prefix("gpu-market-")
                            .tempdir()
                            .map_err(|source| StoreError::CreateDir {
                                url: redacted.clone(),
                                source,
                            })?;
                        let file = dir.path().join("market.db");
                        let url = format!("sqlite://{}?mode=rwc", file.display());
                        (url, file, Some(Arc::new(dir)))
                    }
                };
                ensure_sqlite_dir(&url).map_err(|source| StoreError::CreateDir {
                    url: redacted.clone(),
                    source,
                })?;
                let log_file = decision_db::path_beside(&file);
                let attach = decision_db::attach(&log_file.to_string_lossy());
                let decision_log = DecisionLogFile::connect(config, &log_file, &redacted)
                    .await
                    .map_err(connect_err)?;
                // Creates the file (`mode=rwc`) before the write connections open it.
                let writer = sqlite_pool(config, 1, Synchronous::Configured, None)
                    .connect(&url)
                    .await
                    .map_err(connect_err)?;
                let reader = sqlite_pool(
                    config,
                    sqlite_readers(config.max_connections),
                    Synchronous::Configured,
                    Some(attach),
                )
                .connect(&url)
                .await
                .map_err(connect_err)?;
                let writes = write_queue(config, &file, Synchronous::Configured)
                    .map_err(|err| connect_err(sqlx::Error::Io(err)))?;
                Self {
                    decision_log: Some(Arc::new(DecisionLogFile {
                        // The log's reads join it to the market's tables: they go through the
                        // market's readers, which attach it.
                        store: Store {
                            reader: reader.clone(),
                            ..decision_log.store
                        },
                        path: decision_log.path,
                    })),
                    reader,
                    writes: Some(writes),
                    sqlite_reads: Some(Arc::new(sqlite_reads::SqliteReaders::new(
                        &file,
                        sqlite_setup(config, Synchronous::Configured),
                    ))),
                    writer,
                    backend,
                    url: redacted,
                    scratch,
                }
            }
        };
        Ok(store)
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrate_err = |url: &str, source| StoreError::Migrate {
            url: url.to_owned(),
            source,
        };
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        if let Some(log) = &self.decision_log {
            let schema_err =
                |url: &str, e| migrate_err(url, sqlx::migrate::MigrateError::Execute(e));
            decision_db::ensure_schema(&log.store.writer, "main")
                .await
                .map_err(|e| schema_err(&log.store.url, e))?;
            decision_db::move_from_market(&self.writer, &log.path, decisions::COLUMNS)
                .await
                .map_err(|e| schema_err(&self.url, e))?;
        }
        migrator
            .run(&self.writer)
            .await
            .map_err(|source| migrate_err(&self.url, source))
    }

    /// The store the decision log is written to: its own SQLite file, or this database. Its reads
    /// go through this database's readers either way.
    pub fn decision_log(&self) -> &Store {
        self.decision_log.as_ref().map_or(self, |log| &log.store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The database URL with any password removed.
    pub fn display_url(&self) -> &str {
        &self.url
    }

    pub fn reader(&self) -> &AnyPool {
        &self.reader
    }

    /// SQLite's readers on the calling thread, for the reads that take them.
    fn sqlite_reads(&self) -> Option<&sqlite_reads::SqliteReaders> {
        self.sqlite_reads.as_deref()
    }

    /// The rows of a read: on SQLite on the calling thread when it fits a short read's budget
    /// ([`sqlite_reads`]), otherwise (and on PostgreSQL) through sqlx's readers. `inline_row` reads
    /// one row from rusqlite as `T`'s sqlx `FromRow` does from sqlx.
    async fn fetch_all<T>(
        &self,
        query: &Statement,
        inline_row: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<Vec<T>>
    where
        T: Send + Unpin + for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        if let Some(readers) = self.sqlite_reads() {
            let read = readers.read_bounded(sqlite_reads::SHORT_READ_INSTRUCTIONS, |conn| {
                let mut prepared = query.prepare(conn)?;
                let mut rows = prepared.raw_query();
                let mut all = Vec::new();
                while let Some(row) = rows.next()? {
                    all.push(inline_row(row)?);
                }
                Ok(all)
            })?;
            if let sqlite_reads::Bounded::Done(all) = read {
                return Ok(all);
            }
        }
        Ok(sqlx::query_as_with(query.text(), query.any_arguments())
            .fetch_all(&self.reader)
            .await?)
    }

    /// SQLite reads too long for the calling thread, run again on sqlx's readers (`None` on
    /// PostgreSQL).
    pub fn long_reads(&self) -> Option<u64> {
        self.sqlite_reads()
            .map(sqlite_reads::SqliteReaders::long_reads)
    }

    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// Cheap liveness probe for `/health`.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map(|_| ())
    }

    pub async fn close(&self) {
        if let Some(readers) = &self.sqlite_reads {
            readers.close();
        }
        self.reader.close().await;
        self.writer.close().await;
        if let Some(log) = &self.decision_log {
            log.store.writer.close().await;
        }
    }
}

/// Begins a transaction on `pool` in a task of its own. sqlx 0.8 loses a transaction whose `BEGIN`
/// is cancelled while it awaits the server's answer (its guard rolls back only the depth already
/// counted, and the depth is counted after the answer): the connection would go back to the pool
/// inside a transaction the server keeps open, where the next autocommit write would never commit.
/// A request dropped by its client cancels its future; a task runs on, and a transaction it drops
/// is rolled back.
pub async fn begin(pool: &AnyPool) -> StoreResult<Transaction<'static, Any>> {
    let pool = pool.clone();
    tokio::spawn(async move { pool.begin().await })
        .await
        .map_err(|_| StoreError::Query(sqlx::Error::WorkerCrashed))?
        .map_err(StoreError::from)
}

/// A pooled connection idle for this long is pinged before it is handed out.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

fn pool_options(config: &DatabaseConfig, max_connections: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(config.min_connections.min(max_connections))
        .acquire_timeout(Duration::from_millis(
            config.acquire_timeout_ms.max(config.connect_timeout_ms),
        ))
        // sqlx pings every connection it hands out by default: a round trip to the server (on
        // SQLite, to the connection's thread) per query, a sixth of a booking's CPU under load. A
        // connection that was in use a moment ago has just shown it works; one that sat idle may have
        // been dropped by the server or a proxy, and a failed ping replaces it.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// How a SQLite connection syncs its commits.
#[derive(Debug, Clone, Copy)]
enum Synchronous {
    /// The market's data: as configured (`sqlite_synchronous`).
    Configured,
    /// The decision log: `NORMAL`, a sync per checkpoint instead of per commit. Its entries wait in
    /// memory for their batch anyway, so a sync per batch would buy no guarantee the queue does not
    /// already lack; WAL keeps the file consistent through a crash.
    Normal,
}

/// The settings of every connection to a SQLite file, sqlx's and the write queue's.
fn sqlite_setup(config: &DatabaseConfig, synchronous: Synchronous) -> String {
    let synchronous = match synchronous {
        Synchronous::Configured => config.sqlite_synchronous.pragma(),
        Synchronous::Normal => "NORMAL",
    };
    // temp_store = MEMORY: a write inside a group's transaction keeps the pages it may have to undo
    // in a statement journal, a temporary file by default, and those writes cost the SQLite writer a
    // fifth of its CPU. The journal never outlives its transaction, so a crash loses nothing by it.
    // wal_autocheckpoint = 0: the log is checkpointed by a connection of its own ([`checkpoint`]), so
    // no commit stops to copy it.
    format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; \
         PRAGMA busy_timeout = {}; PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 0;",
        config.busy_timeout_ms
    )
}

fn sqlite_pool(
    config: &DatabaseConfig,
    max_connections: u32,
    synchronous: Synchronous,
    attach: Option<String>,
) -> AnyPoolOptions {
    let setup = format!(
        "{} {}",
        sqlite_setup(config, synchronous),
        attach.unwrap_or_default()
    );
    pool_options(config, max_connections).after_connect(move |conn, _meta| {
        let setup = setup.clone();
        Box::pin(async move {
            conn.execute(setup.as_str()).await?;
            Ok(())
        })
    })
}

/// How many readers a SQLite pool keeps. They run in the process and wait on no network, so beyond
/// about two per core each one more is only one more sqlx worker thread to switch to: on 2 cores,
/// 4 readers took 0.79x the server CPU per book+release cycle of 16 (bench/load.sh, alternated).
fn sqlite_readers(max_connections: u32) -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let two_per_core = u32::try_from(cores.saturating_mul(2)).unwrap_or(u32::MAX);
    max_connections.min(two_per_core.max(4))
}

/// A rusqlite connection to the SQLite file at `path` (which exists), set up with `setup`
/// ([`sqlite_setup`]): the write queue's, the checkpointer's and the booking path's readers'.
fn sqlite_connection(path: &Path, setup: &str) -> rusqlite::Result<rusqlite::Connection> {
    open_sqlite(path, setup, None)
}

/// [`sqlite_connection`] through the VFS named `vfs` (SQLite's default when `None`).
fn open_sqlite(
    path: &Path,
    setup: &str,
    vfs: Option<&str>,
) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    // One thread at a time uses it: SQLite's own per-connection mutex would only cost.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match vfs {
        Some(vfs) => rusqlite::Connection::open_with_flags_and_vfs(path, flags, vfs)?,
        None => rusqlite::Connection::open_with_flags(path, flags)?,
    };
    // The journal mode is the file's (sqlx's connections set it first); this statement returns it.
    let (journal, rest) = setup.split_once(';').unwrap_or((setup, ""));
    conn.query_row(journal, [], |_| Ok(()))?;
    conn.execute_batch(rest)?;
    Ok(conn)
}

/// The write queue of the SQLite file at `path`, with its checkpointer.
fn write_queue(
    config: &DatabaseConfig,
    path: &Path,
    synchronous: Synchronous,
) -> std::io::Result<group_commit::WriteQueue> {
    let open = |synchronous, vfs| {
        open_sqlite(path, &sqlite_setup(config, synchronous), vfs).map_err(std::io::Error::other)
    };
    // The checkpointer syncs the database file unless `sqlite_synchronous` is OFF; it commits
    // nothing itself.
    let checkpointer = open(Synchronous::Configured, None)?;
    // The writer gathers its log writes only where every commit syncs the log (see [`log_writes`]).
    let gathers = matches!(
        (synchronous, config.sqlite_synchronous),
        (Synchronous::Configured, SqliteSynchronous::Full)
    );
    if gathers {
        log_writes::register().map_err(|code| {
            std::io::Error::other(format!("SQLite refused the log-writes layer (code {code})"))
        })?;
    }
    let writer = open(synchronous, gathers.then_some(log_writes::VFS_NAME))?;
    group_commit::WriteQueue::start(writer, Some(checkpointer))
}

impl DecisionLogFile {
    async fn connect(
        config: &DatabaseConfig,
        path: &Path,
        market_url: &str,
    ) -> Result<Self, sqlx::Error> {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let writer = sqlite_pool(config, 1, Synchronous::Normal, None)
            .connect(&url)
            .await?;
        let store = Store {
            // Replaced by the market's readers once they are connected.
            reader: writer.clone(),
            writes: Some(write_queue(config, path, Synchronous::Normal).map_err(sqlx::Error::Io)?),
            sqlite_reads: None,
            writer,
            backend: Backend::Sqlite,
            url: format!("{market_url} (decision log: {})", path.display()),
            decision_log: None,
            scratch: None,
        };
        Ok(Self {
            store,
            path: path.to_owned(),
        })
    }
}

/// A SQLite URL that creates its database file when it is missing, as the default URL does: without a
/// `mode=` parameter sqlx opens an existing file read-write but never creates one, which surprised
/// every new user who passed `sqlite:///path/market.db`. An explicit `mode=` is left as given.
fn sqlite_url_creating(url: &str) -> String {
    let has_mode = url
        .split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|p| p.starts_with("mode=")));
    if has_mode || url.contains(":memory:") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}mode=rwc")
}

/// The file a SQLite URL names; `None` for an in-memory database.
fn sqlite_file(url: &str) -> Option<&Path> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    let in_memory = path.is_empty() || path.contains(":memory:") || url.contains("mode=memory");
    (!in_memory).then(|| Path::new(path))
}

/// Creates the parent directory of a SQLite database file (the default lives under `data/`).
fn ensure_sqlite_dir(url: &str) -> std::io::Result<()> {
    match sqlite_file(url).and_then(Path::parent) {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn sqlite_urls_create_their_file_unless_told_otherwise() {
        assert_eq!(
            sqlite_url_creating("sqlite:///tmp/m.db"),
            "sqlite:///tmp/m.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url_creating("sqlite://m.db?cache=shared"),
            "sqlite://m.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            sqlite_url_creating("sqlite://m.db?mode=ro"),
            "sqlite://m.db?mode=ro"
        );
        assert_eq!(sqlite_url_creating("sqlite::memory:"), "sqlite::memory:");
    }

    #[tokio::test]
    async fn a_new_database_file_is_created_from_a_plain_url() {
        let dir = std::env::temp_dir().join(format!("gpu-market-store-{}", uuid::Uuid::new_v4()));
        let file = dir.join("nested").join("market.db");
        let config = DatabaseConfig {
            url: Secret::new(format!("sqlite://{}", file.display())),
            ..DatabaseConfig::default()
        };
        let store = Store::connect(&config).await;
        assert!(store.is_ok(), "connect failed: {:?}", store.err());
        if let Ok(store) = store {
            assert!(store.migrate().await.is_ok());
            store.close().await;
        }
        assert!(file.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    async fn in_memory_store() -> Store {
        install_default_drivers();
        let config = DatabaseConfig {
            url: Secret::new("sqlite::memory:".to_owned()),
            ..DatabaseConfig::default()
        };
        Store::connect(&config).await.expect("connect")
    }

    /// An in-memory URL still gives one database to the write queue and the readers (a private
    /// file), gone with the store.
    #[tokio::test]
    async fn an_in_memory_database_serves_its_writes_to_its_readers() {
        let store = in_memory_store().await;
        store.migrate().await.expect("migrate");
        let written = store
            .execute(Statement::new(
                "INSERT INTO gpu_models (model_key) VALUES ('rtx4090')",
            ))
            .await
            .expect("write");
        assert_eq!(written, 1);
        let models: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM gpu_models")
            .fetch_one(store.reader())
            .await
            .expect("read");
        assert_eq!(models, 1);
        let dir = store
            .scratch
            .as_ref()
            .map(|dir| dir.path().to_owned())
            .expect("a private directory");
        store.close().await;
        drop(store);
        assert!(!dir.exists(), "the private directory outlived the store");
    }

    /// A read too long for the request's thread is stopped there and answered by sqlx's readers,
    /// whole; a short one is answered on the thread.
    #[tokio::test]
    async fn a_long_read_is_run_again_on_the_reader_threads_and_answers_whole() {
        let store = in_memory_store().await;
        assert_eq!(store.long_reads(), Some(0));
        // Counting to 100 000 takes several instructions a step: far past a short read's budget.
        let long = Statement::new(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
             SELECT COUNT(*), SUM(i) FROM n",
        )
        .bind(100_000_i64);
        let rows: Vec<(i64, i64)> = store
            .fetch_all(&long, |row| Ok((row.get(0)?, row.get(1)?)))
            .await
            .expect("the long read");
        assert_eq!(rows, vec![(100_000, 5_000_050_000)]);
        assert_eq!(store.long_reads(), Some(1));
        let short = Statement::new("SELECT $1, $2").bind(7_i64).bind(8_i64);
        let rows: Vec<(i64, i64)> = store
            .fetch_all(&short, |row| Ok((row.get(0)?, row.get(1)?)))
            .await
            .expect("the short read");
        assert_eq!(rows, vec![(7, 8)]);
        assert_eq!(store.long_reads(), Some(1), "a short read was handed over");
        store.close().await;
    }
}
