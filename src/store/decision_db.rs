//! Where the decision log lives on SQLite: a database file of its own beside the market's
//! (`market.db` → `market.decisions.db`), with its own single writer and group commit. Decisions are
//! written in batches off the request path; in the market's file every batch would take the one
//! writer from bookings for its inserts and its five index updates. The market's readers attach the
//! file as `decision_log`, so the reports still join decisions to the bookings they priced.

use std::path::{Path, PathBuf};

use sqlx::AnyPool;

/// The schema name the market's connections attach the log's file under.
pub(super) const SCHEMA: &str = "decision_log";

const SCHEMA_V1: &str = include_str!("../../migrations/sqlite-decision-log/v1.sql");
const VERSION: i64 = 1;

/// The log's file for the market database file `market` (a path, not a URL).
pub(super) fn path_beside(market: &Path) -> PathBuf {
    let stem = market
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "market".to_owned());
    market.with_file_name(format!("{stem}.decisions.db"))
}

/// The statement that attaches `file` as [`SCHEMA`].
pub(super) fn attach(file: &str) -> String {
    format!(
        "ATTACH DATABASE '{}' AS {SCHEMA};",
        file.replace('\'', "''")
    )
}

/// Creates or upgrades the log's tables, as `schema` names the log on `pool`'s connections.
pub(super) async fn ensure_schema(pool: &AnyPool, schema: &str) -> Result<(), sqlx::Error> {
    let version: i64 = sqlx::query_scalar(&format!("PRAGMA {schema}.user_version"))
        .fetch_one(pool)
        .await?;
    if version < VERSION {
        sqlx::raw_sql(&SCHEMA_V1.replace("{schema}", schema))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Before the migration that drops it: copies the decisions of a market database that kept the log in
/// the market's file (up to migration 0009) to the log's file, on one connection of the market's
/// writer.
/// Run again after a crash, it copies nothing twice (`seq` and `id` are unique).
pub(super) async fn move_from_market(
    market_writer: &AnyPool,
    file: &Path,
    columns: &str,
) -> Result<(), sqlx::Error> {
    let mut conn = market_writer.acquire().await?;
    let legacy: Option<String> = sqlx::query_scalar(
        "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name = 'policy_decisions'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if legacy.is_none() {
        return Ok(());
    }
    sqlx::raw_sql(&attach(&file.to_string_lossy()))
        .execute(&mut *conn)
        .await?;
    let copied = sqlx::raw_sql(&format!(
        "INSERT OR IGNORE INTO {SCHEMA}.policy_decisions ({columns}) \
         SELECT {columns} FROM main.policy_decisions"
    ))
    .execute(&mut *conn)
    .await;
    let detached = sqlx::raw_sql(&format!("DETACH DATABASE {SCHEMA}"))
        .execute(&mut *conn)
        .await;
    let copied = copied?.rows_affected();
    detached?;
    if copied > 0 {
        tracing::info!(copied, "decision log moved to {}", file.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_file_sits_beside_the_market() {
        assert_eq!(
            path_beside(Path::new("data/market.db")),
            Path::new("data/market.decisions.db")
        );
        assert_eq!(
            path_beside(Path::new("/tmp/m")),
            Path::new("/tmp/m.decisions.db")
        );
    }

    #[test]
    fn quotes_in_a_path_are_escaped() {
        assert_eq!(
            attach("/tmp/o'neil/m.decisions.db"),
            "ATTACH DATABASE '/tmp/o''neil/m.decisions.db' AS decision_log;"
        );
    }
}
