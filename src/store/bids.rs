//! Bids from the older coordinator's marketplace API.

use super::sql::Sql;
use super::{Page, Statement, Store, StoreResult};
use crate::domain::{BidId, BidStatus, Money, PrincipalId, Timestamp};

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
    store
        .execute(
            Statement::new(
                "INSERT INTO bids (id, client_id, provider, gpu_model, capacity, price_micro, notes, status, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8)",
            )
            .bind(bid.id.clone())
            .bind(bid.client_id.clone())
            .bind(bid.provider.clone())
            .bind(bid.gpu_model.clone())
            .bind(bid.capacity)
            .bind(bid.price)
            .bind(bid.notes.clone())
            .bind(bid.created_at),
        )
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

/// A stored bid.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Bid {
    pub id: BidId,
    pub client_id: PrincipalId,
    pub provider: Option<String>,
    pub gpu_model: Option<String>,
    pub capacity: i64,
    #[sqlx(rename = "price_micro")]
    pub price: Money,
    pub notes: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: BidStatus,
    pub created_at: Timestamp,
}

const BID_COLUMNS: &str =
    "id, client_id, provider, gpu_model, capacity, price_micro, notes, status, created_at";

pub async fn get(store: &Store, id: &BidId) -> StoreResult<Option<Bid>> {
    Ok(
        sqlx::query_as(&format!("SELECT {BID_COLUMNS} FROM bids WHERE id = $1"))
            .bind(id)
            .fetch_optional(store.reader())
            .await?,
    )
}

/// Bids newest first: one client's (`Some`) or everyone's, optionally in one status.
pub async fn list(
    store: &Store,
    client_id: Option<&PrincipalId>,
    status: Option<BidStatus>,
    page: Page,
) -> StoreResult<Vec<Bid>> {
    let mut sql = Sql::new(format!("SELECT {BID_COLUMNS} FROM bids WHERE 1 = 1"));
    if let Some(client_id) = client_id {
        sql.push(" AND client_id = ")
            .bind(client_id.as_str().to_owned());
    }
    if let Some(status) = status {
        sql.push(" AND status = ").bind(status.as_str().to_owned());
    }
    sql.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .bind(page.limit)
        .push(" OFFSET ")
        .bind(page.offset);
    let (text, args) = sql.into_parts();
    Ok(sqlx::query_as_with(&text, args)
        .fetch_all(store.reader())
        .await?)
}

/// Cancels a pending bid; false when it is not pending (any more).
pub async fn cancel(store: &Store, id: &BidId) -> StoreResult<bool> {
    let result = store
        .execute(
            Statement::new(
                "UPDATE bids SET status = 'cancelled' WHERE id = $1 AND status = 'pending'",
            )
            .bind(id.clone()),
        )
        .await?;
    Ok(result == 1)
}
