//! Reviews and the per-GPU rating aggregates they feed.

use sqlx::FromRow;

use super::Store;

const REVIEW_COLUMNS: &str = "id, gpu_id, reviewer_id, rating, comment, status, moderation_reason, policy, created_at, decided_at";

#[derive(Debug, Clone, FromRow)]
pub struct ReviewRow {
    pub id: String,
    pub gpu_id: String,
    pub reviewer_id: String,
    pub rating: i64,
    pub comment: Option<String>,
    pub status: String,
    pub moderation_reason: String,
    pub policy: String,
    pub created_at: i64,
    pub decided_at: Option<i64>,
}

/// Stores a review; an accepted one is added to its GPU's aggregate in the same transaction, with an
/// in-place increment so concurrent reviews never lose an update.
pub async fn insert(store: &Store, review: &ReviewRow) -> Result<(), sqlx::Error> {
    let mut tx = store.writer().begin().await?;
    sqlx::query(&format!(
        "INSERT INTO reviews ({REVIEW_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(&review.id)
    .bind(&review.gpu_id)
    .bind(&review.reviewer_id)
    .bind(review.rating)
    .bind(&review.comment)
    .bind(&review.status)
    .bind(&review.moderation_reason)
    .bind(&review.policy)
    .bind(review.created_at)
    .bind(review.decided_at)
    .execute(&mut *tx)
    .await?;
    if review.status == "accepted" {
        add_to_aggregate(&mut tx, &review.gpu_id, review.rating).await?;
    }
    tx.commit().await?;
    store.catalogue_changed();
    Ok(())
}

async fn add_to_aggregate(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    gpu_id: &str,
    rating: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE gpus SET rating_sum = rating_sum + $1, rating_count = rating_count + 1 WHERE id = $2")
        .bind(rating)
        .bind(gpu_id)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

/// Accepted reviews of a GPU, newest first.
pub async fn accepted_for_gpu(
    store: &Store,
    gpu_id: &str,
    limit: i64,
    offset: i64,
) -> Result<Vec<ReviewRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {REVIEW_COLUMNS} FROM reviews WHERE gpu_id = $1 AND status = 'accepted' \
         ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
    );
    sqlx::query_as(&sql)
        .bind(gpu_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(store.reader())
        .await
}

pub async fn by_status(
    store: &Store,
    status: &str,
    limit: i64,
    offset: i64,
) -> Result<Vec<ReviewRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {REVIEW_COLUMNS} FROM reviews WHERE status = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
    );
    sqlx::query_as(&sql)
        .bind(status)
        .bind(limit)
        .bind(offset)
        .fetch_all(store.reader())
        .await
}

pub async fn get(store: &Store, id: &str) -> Result<Option<ReviewRow>, sqlx::Error> {
    let sql = format!("SELECT {REVIEW_COLUMNS} FROM reviews WHERE id = $1");
    sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(store.reader())
        .await
}

/// An admin's decision on a flagged review; approval counts it in the aggregate. Returns false when the
/// review was not (or no longer) flagged.
pub async fn decide_flagged(
    store: &Store,
    id: &str,
    approve: bool,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = store.writer().begin().await?;
    let status = if approve { "accepted" } else { "rejected" };
    let changed = sqlx::query(
        "UPDATE reviews SET status = $1, decided_at = $2 WHERE id = $3 AND status = 'flagged'",
    )
    .bind(status)
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if changed.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    if approve {
        let (gpu_id, rating): (String, i64) =
            sqlx::query_as("SELECT gpu_id, rating FROM reviews WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        add_to_aggregate(&mut tx, &gpu_id, rating).await?;
    }
    tx.commit().await?;
    store.catalogue_changed();
    Ok(true)
}

/// Reviews written by `reviewer_id` since `since`, any status.
pub async fn written_since(
    store: &Store,
    reviewer_id: &str,
    since: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM reviews WHERE reviewer_id = $1 AND created_at >= $2")
        .bind(reviewer_id)
        .bind(since)
        .fetch_one(store.reader())
        .await
}
