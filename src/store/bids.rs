//! Bids from the older coordinator's marketplace API.

use super::{Store, StoreResult};
use crate::domain::{BidId, Money, PrincipalId, Timestamp};

/// A new bid; bids are placed `pending`.
#[derive(Debug, Clone)]
pub struct NewBid {
    pub id: BidId,
    pub client_id: PrincipalId,
    pub provider: Option<String>,
    pub gpu_model: Option<String>,
    pub capacity: i64,
    pub price: Money,
    pub notes: Option<String>,
    pub created_at: Timestamp,
}

pub async fn insert(store: &Store, bid: &NewBid) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO bids (id, client_id, provider, gpu_model, capacity, price_micro, notes, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8)",
    )
    .bind(&bid.id)
    .bind(&bid.client_id)
    .bind(&bid.provider)
    .bind(&bid.gpu_model)
    .bind(bid.capacity)
    .bind(bid.price)
    .bind(&bid.notes)
    .bind(bid.created_at)
    .execute(store.writer())
    .await?;
    Ok(())
}

pub async fn count_pending(store: &Store) -> StoreResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM bids WHERE status = 'pending'")
            .fetch_one(store.reader())
            .await?,
    )
}
