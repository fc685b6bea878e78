//! Persistence: sqlx over SQLite (embedded default) or PostgreSQL (scale-out), through the `Any` driver so
//! every query is written once. SQL placeholders are `$n`, which both backends accept.
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
pub mod price_state;
pub mod prices;
pub mod reviews;
mod sql;

pub use gpus::{GpuFilter, GpuOrder, Matching, Page};
pub use group_commit::{Statement, WriteFuture, WriteStats};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, Connection, Executor, Transaction};

use crate::config::{DatabaseConfig, redact_url};

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
    /// The commit of a group of writes failed: none of them is on disk.
    #[error("database commit failed: {0}")]
    Commit(Arc<sqlx::Error>),
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
    backend: Backend,
    url: String,
    /// SQLite: the decision log, in a file of its own (see [`decision_db`]); `None` when it shares
    /// this database (PostgreSQL, which has many writers, and an in-memory SQLite market).
    decision_log: Option<Arc<DecisionLogFile>>,
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
                    backend,
                    url: redacted,
                    decision_log: None,
                }
            }
            Backend::Sqlite => {
                ensure_sqlite_dir(&url).map_err(|source| StoreError::CreateDir {
                    url: redacted.clone(),
                    source,
                })?;
                let url = sqlite_url_creating(&url);
                let busy_timeout = config.busy_timeout_ms;
                let log_file = sqlite_file(&url).map(decision_db::path_beside);
                // An in-memory database exists once per connection: its one connection is reader and
                // writer, and holds the log in an attached in-memory database of its own.
                let attach = match &log_file {
                    Some(file) => decision_db::attach(&file.to_string_lossy()),
                    None => decision_db::attach(":memory:"),
                };
                let decision_log = match &log_file {
                    Some(file) => Some(
                        DecisionLogFile::connect(config, file, &redacted)
                            .await
                            .map_err(connect_err)?,
                    ),
                    None => None,
                };
                let writer_attach = decision_log.is_none().then_some(attach.clone());
                // A database in a file is checkpointed off the writer; one in memory has no log.
                let checkpoints = match log_file {
                    Some(_) => Checkpoints::Elsewhere,
                    None => Checkpoints::InCommit,
                };
                let writer = sqlite_pool(
                    config,
                    1,
                    busy_timeout,
                    Synchronous::Configured,
                    checkpoints,
                    writer_attach,
                )
                .connect(&url)
                .await
                .map_err(connect_err)?;
                let checkpointer = match checkpoints {
                    Checkpoints::Elsewhere => {
                        Some(checkpoint_pool(config, &url).await.map_err(connect_err)?)
                    }
                    Checkpoints::InCommit => None,
                };
                let reader = match &decision_log {
                    None => writer.clone(),
                    Some(_) => sqlite_pool(
                        config,
                        config.max_connections,
                        busy_timeout,
                        Synchronous::Configured,
                        // Readers commit nothing.
                        Checkpoints::InCommit,
                        Some(attach),
                    )
                    .connect(&url)
                    .await
                    .map_err(connect_err)?,
                };
                Self {
                    decision_log: decision_log.map(|mut log| {
                        // The log's reads join it to the market's tables: they go through the
                        // market's readers, which attach it.
                        log.store.reader = reader.clone();
                        Arc::new(log)
                    }),
                    reader,
                    writes: Some(
                        group_commit::WriteQueue::start(writer.clone(), checkpointer)
                            .map_err(|err| connect_err(sqlx::Error::Io(err)))?,
                    ),
                    writer,
                    backend,
                    url: redacted,
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
        if self.backend == Backend::Sqlite {
            let schema_err =
                |url: &str, e| migrate_err(url, sqlx::migrate::MigrateError::Execute(e));
            match &self.decision_log {
                Some(log) => {
                    decision_db::ensure_schema(&log.store.writer, "main")
                        .await
                        .map_err(|e| schema_err(&log.store.url, e))?;
                    decision_db::move_from_market(&self.writer, &log.path, decisions::COLUMNS)
                        .await
                        .map_err(|e| schema_err(&self.url, e))?;
                }
                None => decision_db::ensure_schema(&self.writer, decision_db::SCHEMA)
                    .await
                    .map_err(|e| schema_err(&self.url, e))?,
            }
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

/// How a SQLite pool syncs its commits.
#[derive(Debug, Clone, Copy)]
enum Synchronous {
    /// The market's data: as configured (`sqlite_synchronous`).
    Configured,
    /// The decision log: `NORMAL`, a sync per checkpoint instead of per commit. Its entries wait in
    /// memory for their batch anyway, so a sync per batch would buy no guarantee the queue does not
    /// already lack; WAL keeps the file consistent through a crash.
    Normal,
}

/// Who checkpoints the write-ahead log that a SQLite pool's commits append to.
#[derive(Debug, Clone, Copy)]
enum Checkpoints {
    /// SQLite, inside the commit that takes the log past 1 000 pages.
    InCommit,
    /// A connection of its own ([`checkpoint`]): the pool's commits never stop for one.
    Elsewhere,
}

fn sqlite_pool(
    config: &DatabaseConfig,
    max_connections: u32,
    busy_timeout_ms: u64,
    synchronous: Synchronous,
    checkpoints: Checkpoints,
    attach: Option<String>,
) -> AnyPoolOptions {
    let synchronous = match synchronous {
        Synchronous::Configured => config.sqlite_synchronous.pragma(),
        Synchronous::Normal => "NORMAL",
    };
    let autocheckpoint = match checkpoints {
        Checkpoints::InCommit => "",
        Checkpoints::Elsewhere => "PRAGMA wal_autocheckpoint = 0;",
    };
    let attach = attach.unwrap_or_default();
    pool_options(config, max_connections).after_connect(move |conn, _meta| {
        // temp_store = MEMORY: a write inside a group's transaction keeps the pages it may have to
        // undo in a statement journal, a temporary file by default, and those writes cost the SQLite
        // writer a fifth of its CPU. The journal never outlives its transaction, so a crash loses
        // nothing by it.
        let setup = format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; \
             PRAGMA busy_timeout = {busy_timeout_ms}; PRAGMA temp_store = MEMORY; {autocheckpoint} \
             {attach}"
        );
        Box::pin(async move {
            conn.execute(setup.as_str()).await?;
            Ok(())
        })
    })
}

/// The connection that checkpoints the log of the database at `url` for its writer.
async fn checkpoint_pool(config: &DatabaseConfig, url: &str) -> Result<AnyPool, sqlx::Error> {
    // It syncs the database file unless `sqlite_synchronous` is OFF; it commits nothing itself.
    sqlite_pool(
        config,
        1,
        config.busy_timeout_ms,
        Synchronous::Configured,
        Checkpoints::InCommit,
        None,
    )
    .connect(url)
    .await
}

impl DecisionLogFile {
    async fn connect(
        config: &DatabaseConfig,
        path: &Path,
        market_url: &str,
    ) -> Result<Self, sqlx::Error> {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let writer = sqlite_pool(
            config,
            1,
            config.busy_timeout_ms,
            Synchronous::Normal,
            Checkpoints::Elsewhere,
            None,
        )
        .connect(&url)
        .await?;
        let checkpointer = checkpoint_pool(config, &url).await?;
        let store = Store {
            // Replaced by the market's readers once they are connected.
            reader: writer.clone(),
            writes: Some(
                group_commit::WriteQueue::start(writer.clone(), Some(checkpointer))
                    .map_err(sqlx::Error::Io)?,
            ),
            writer,
            backend: Backend::Sqlite,
            url: format!("{market_url} (decision log: {})", path.display()),
            decision_log: None,
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
}
