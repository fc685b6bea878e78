//! Persistence: sqlx over SQLite (embedded default) or PostgreSQL (scale-out), through the `Any` driver so
//! every query is written once. SQL placeholders are `$n`, which both backends accept.
//!
//! Times are unix microseconds and money integer micro-units in every table.

pub mod bids;
pub mod bookings;
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

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

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
                }
            }
            Backend::Sqlite => {
                ensure_sqlite_dir(&url).map_err(|source| StoreError::CreateDir {
                    url: redacted.clone(),
                    source,
                })?;
                let url = sqlite_url_creating(&url);
                let busy_timeout = config.busy_timeout_ms;
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                let writer = sqlite_pool(config, 1, busy_timeout)
                    .connect(&url)
                    .await
                    .map_err(connect_err)?;
                // An in-memory database exists once per connection: readers must share the writer.
                let reader = if in_memory {
                    writer.clone()
                } else {
                    sqlite_pool(config, config.max_connections, busy_timeout)
                        .connect(&url)
                        .await
                        .map_err(connect_err)?
                };
                Self {
                    reader,
                    writes: Some(group_commit::WriteQueue::start(writer.clone())),
                    writer,
                    backend,
                    url: redacted,
                }
            }
        };
        Ok(store)
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&self.writer)
            .await
            .map_err(|source| StoreError::Migrate {
                url: self.url.clone(),
                source,
            })
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
    }
}

fn pool_options(config: &DatabaseConfig, max_connections: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(config.min_connections.min(max_connections))
        .acquire_timeout(Duration::from_millis(
            config.acquire_timeout_ms.max(config.connect_timeout_ms),
        ))
}

fn sqlite_pool(
    config: &DatabaseConfig,
    max_connections: u32,
    busy_timeout_ms: u64,
) -> AnyPoolOptions {
    let synchronous = config.sqlite_synchronous.pragma();
    pool_options(config, max_connections).after_connect(move |conn, _meta| {
        Box::pin(async move {
            conn.execute(
                format!(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; \
                     PRAGMA busy_timeout = {busy_timeout_ms};"
                )
                .as_str(),
            )
            .await?;
            Ok(())
        })
    })
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

/// Creates the parent directory of a SQLite database file (the default lives under `data/`).
fn ensure_sqlite_dir(url: &str) -> std::io::Result<()> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") {
        return Ok(());
    }
    match Path::new(path).parent() {
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
