//! Bids from the older coordinator's marketplace API.

use sqlx::FromRow;

use super::Store;

#[derive(Debug, Clone, FromRow)]
pub struct BidRow {
    pub id: String,
    pub client_id: String,
    pub provider: Option<String>,
    pub gpu_model: Option<String>,
    pub capacity: i64,
    pub price_micro: i64,
    pub notes: Option<String>,
    pub status: String,
    pub created_at: i64,
}

pub async fn insert(store: &Store, bid: &BidRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO bids (id, client_id, provider, gpu_model, capacity, price_micro, notes, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&bid.id)
    .bind(&bid.client_id)
    .bind(&bid.provider)
    .bind(&bid.gpu_model)
    .bind(bid.capacity)
    .bind(bid.price_micro)
    .bind(&bid.notes)
    .bind(&bid.status)
    .bind(bid.created_at)
    .execute(store.writer())
    .await
    .map(|_| ())
}

pub async fn count_pending(store: &Store) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM bids WHERE status = 'pending'")
        .fetch_one(store.reader())
        .await
}
