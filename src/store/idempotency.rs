//! `Idempotency-Key` records: one row per (caller, key), inserted before the write runs (the claim) and
//! completed with its answer. The primary key makes the claim atomic on every replica: of two
//! requests with the same key, exactly one inserts the row.

use sqlx::Row;

use super::{Statement, Store, StoreResult};

/// What the first request with a key asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// `POST /v1/marketplace/gpu/gpu_.../book`
    pub request: String,
    pub body_sha256: String,
}

/// A key already in use.
#[derive(Debug, Clone)]
pub struct Existing {
    pub fingerprint: Fingerprint,
    /// `None` while the first request still runs.
    pub response: Option<(u16, String)>,
}

#[derive(Debug)]
pub enum Claim {
    /// The key is ours: run the request and [`complete`] (or [`release`]) it.
    Claimed,
    Existing(Existing),
}

/// Times in unix microseconds: `now`; keys created before `expired_before` count as absent; a claim
/// without an answer made before `stale_before` was abandoned (its replica died) and may be taken over.
pub struct ClaimTimes {
    pub now: i64,
    pub expired_before: i64,
    pub stale_before: i64,
}

pub async fn claim(
    store: &Store,
    principal: &str,
    key: &str,
    fingerprint: &Fingerprint,
    times: &ClaimTimes,
) -> StoreResult<Claim> {
    store.execute(Statement::new(
        "DELETE FROM idempotency_keys WHERE principal = $1 AND idem_key = $2 AND created_at < $3",
    )
    .bind(principal.to_owned())
    .bind(key.to_owned())
    .bind(times.expired_before))
    .await?;
    let inserted = store.execute(Statement::new(
        "INSERT INTO idempotency_keys (principal, idem_key, request, body_sha256, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (principal, idem_key) DO NOTHING",
    )
    .bind(principal.to_owned())
    .bind(key.to_owned())
    .bind(fingerprint.request.clone())
    .bind(fingerprint.body_sha256.clone())
    .bind(times.now))
    .await?;
    if inserted == 1 {
        return Ok(Claim::Claimed);
    }
    let taken_over = store
        .execute(
            Statement::new(
                "UPDATE idempotency_keys SET created_at = $3 \
         WHERE principal = $1 AND idem_key = $2 AND status IS NULL AND created_at < $4 \
         AND request = $5 AND body_sha256 = $6",
            )
            .bind(principal.to_owned())
            .bind(key.to_owned())
            .bind(times.now)
            .bind(times.stale_before)
            .bind(fingerprint.request.clone())
            .bind(fingerprint.body_sha256.clone()),
        )
        .await?;
    if taken_over == 1 {
        return Ok(Claim::Claimed);
    }
    match find(store, principal, key).await? {
        Some(existing) => Ok(Claim::Existing(existing)),
        // Purged between the insert and the read: the key is free again.
        None => Box::pin(claim(store, principal, key, fingerprint, times)).await,
    }
}

pub async fn find(store: &Store, principal: &str, key: &str) -> StoreResult<Option<Existing>> {
    // The writer: on SQLite a reader may not see the claim's answer committed a moment ago.
    let row = sqlx::query(
        "SELECT request, body_sha256, status, response FROM idempotency_keys \
         WHERE principal = $1 AND idem_key = $2",
    )
    .bind(principal)
    .bind(key)
    .fetch_optional(store.writer())
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let status: Option<i64> = row.try_get("status")?;
    let response: Option<String> = row.try_get("response")?;
    let response = match (status, response) {
        (Some(status), Some(body)) => Some((
            u16::try_from(status).map_err(|_| {
                super::StoreError::InvalidValue(format!("idempotency status {status}"))
            })?,
            body,
        )),
        _ => None,
    };
    Ok(Some(Existing {
        fingerprint: Fingerprint {
            request: row.try_get("request")?,
            body_sha256: row.try_get("body_sha256")?,
        },
        response,
    }))
}

/// Stores the first answer.
pub async fn complete(
    store: &Store,
    principal: &str,
    key: &str,
    status: u16,
    body: &str,
) -> StoreResult<()> {
    store.execute(Statement::new(
        "UPDATE idempotency_keys SET status = $3, response = $4 WHERE principal = $1 AND idem_key = $2",
    )
    .bind(principal.to_owned())
    .bind(key.to_owned())
    .bind(i64::from(status))
    .bind(body.to_owned()))
    .await?;
    Ok(())
}

/// Gives an unanswered claim up (the request failed on the server's side), so a retry runs again.
pub async fn release(store: &Store, principal: &str, key: &str) -> StoreResult<()> {
    store.execute(Statement::new(
        "DELETE FROM idempotency_keys WHERE principal = $1 AND idem_key = $2 AND status IS NULL",
    )
    .bind(principal.to_owned())
    .bind(key.to_owned()))
    .await?;
    Ok(())
}

/// Deletes keys created before `before`; returns how many.
pub async fn purge(store: &Store, before: i64) -> StoreResult<u64> {
    store
        .execute(Statement::new("DELETE FROM idempotency_keys WHERE created_at < $1").bind(before))
        .await
}
