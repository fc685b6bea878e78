//! `Idempotency-Key` bookkeeping: claiming a key, storing the first answer, expiring old keys. The
//! HTTP side (which requests, replaying answers) is `api::idempotency`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Market;
use crate::domain::Timestamp;
use crate::error::Result;
use crate::store::idempotency::{self, ClaimTimes};

pub use crate::store::idempotency::{Claim, Existing, Fingerprint};

/// How often expired keys are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

impl Market {
    fn idempotency_ttl_micros(&self) -> i64 {
        let seconds = self.config.server.idempotency_ttl_seconds;
        i64::try_from(seconds.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
    }

    /// A claim without an answer is abandoned once it is older than twice the request deadline (its
    /// replica stopped mid-request); without a deadline, after a minute.
    fn stale_claim_micros(&self) -> i64 {
        let timeout_ms = match self.config.server.request_timeout_ms {
            0 => 30_000,
            ms => ms,
        };
        i64::try_from(timeout_ms.saturating_mul(2_000)).unwrap_or(i64::MAX)
    }
}

pub async fn claim(
    market: &Market,
    principal: &str,
    key: &str,
    fingerprint: &Fingerprint,
) -> Result<Claim> {
    let now = Timestamp::now().micros();
    let times = ClaimTimes {
        now,
        expired_before: now.saturating_sub(market.idempotency_ttl_micros()),
        stale_before: now.saturating_sub(market.stale_claim_micros()),
    };
    Ok(idempotency::claim(&market.store, principal, key, fingerprint, &times).await?)
}

pub async fn find(market: &Market, principal: &str, key: &str) -> Result<Option<Existing>> {
    Ok(idempotency::find(&market.store, principal, key).await?)
}

pub async fn complete(
    market: &Market,
    principal: &str,
    key: &str,
    status: u16,
    body: &str,
) -> Result<()> {
    Ok(idempotency::complete(&market.store, principal, key, status, body).await?)
}

pub async fn release(market: &Market, principal: &str, key: &str) -> Result<()> {
    Ok(idempotency::release(&market.store, principal, key).await?)
}

/// Deletes expired keys every minute until `shutdown`.
pub async fn run_purger(market: Market, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(PURGE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {
                let before = Timestamp::now().micros().saturating_sub(market.idempotency_ttl_micros());
                match idempotency::purge(&market.store, before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(keys = n, "expired idempotency keys purged"),
                    Err(err) => tracing::warn!(error = %err, "purging idempotency keys failed"),
                }
            }
        }
    }
}
