//! Reviews and the per-GPU rating aggregates they feed.

use super::gpus::Page;
use super::{Statement, Store, StoreResult};
use crate::domain::{GpuId, PrincipalId, Review, ReviewId, ReviewStatus, Timestamp};

const REVIEW_COLUMNS: &str = "id, gpu_id, reviewer_id, rating, comment, status, moderation_reason, policy, created_at, decided_at, decision_id";

/// Stores a review; an accepted one is added to its GPU's aggregate in the same transaction, with an
/// in-place increment so concurrent reviews never lose an update.
pub async fn insert(store: &Store, review: &Review) -> StoreResult<()> {
    let mut statements = vec![
        Statement::new(format!(
            "INSERT INTO reviews ({REVIEW_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(&review.id)
        .bind(&review.gpu_id)
        .bind(&review.reviewer_id)
        .bind(i64::from(review.rating.get()))
        .bind(&review.comment)
        .bind(review.status.as_str())
        .bind(&review.moderation_reason)
        .bind(&review.policy)
        .bind(review.created_at)
        .bind(review.decided_at)
        .bind(&review.decision_id),
    ];
    if review.status == ReviewStatus::Accepted {
        statements.push(
            Statement::new(
                "UPDATE gpus SET rating_sum = rating_sum + $1, rating_count = rating_count + 1 \
                 WHERE id = $2",
            )
            .bind(i64::from(review.rating.get()))
            .bind(&review.gpu_id),
        );
    }
    store.execute_all(statements).await?;
    Ok(())
}

/// Accepted reviews of a GPU, newest first.
pub async fn accepted_for_gpu(
    store: &Store,
    gpu_id: &GpuId,
    page: Page,
) -> StoreResult<Vec<Review>> {
    let sql = format!(
        "SELECT {REVIEW_COLUMNS} FROM reviews WHERE gpu_id = $1 AND status = 'accepted' \
         ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
    );
    Ok(sqlx::query_as(&sql)
        .bind(gpu_id)
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(store.reader())
        .await?)
}

pub async fn by_status(
    store: &Store,
    status: ReviewStatus,
    page: Page,
) -> StoreResult<Vec<Review>> {
    let sql = format!(
        "SELECT {REVIEW_COLUMNS} FROM reviews WHERE status = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
    );
    Ok(sqlx::query_as(&sql)
        .bind(status.as_str())
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(store.reader())
        .await?)
}

pub async fn get(store: &Store, id: &ReviewId) -> StoreResult<Option<Review>> {
    let sql = format!("SELECT {REVIEW_COLUMNS} FROM reviews WHERE id = $1");
    Ok(sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(store.writer())
        .await?)
}

/// An admin's decision on a flagged review; approval counts it in the aggregate. Returns false when the
/// review was not (or no longer) flagged.
pub async fn decide_flagged(
    store: &Store,
    id: &ReviewId,
    decision: ReviewStatus,
    now: Timestamp,
) -> StoreResult<bool> {
    let decided = Statement::new(
        "UPDATE reviews SET status = $1, decided_at = $2 WHERE id = $3 AND status = 'flagged'",
    )
    .bind(decision.as_str())
    .bind(now)
    .bind(id);
    // The review's rating, added to its GPU's aggregate in the same write once it is accepted.
    let counted = (decision == ReviewStatus::Accepted).then(|| {
        Statement::new(
            "UPDATE gpus SET rating_sum = rating_sum + (SELECT rating FROM reviews WHERE id = $1), \
             rating_count = rating_count + 1 WHERE id = (SELECT gpu_id FROM reviews WHERE id = $1)",
        )
        .bind(id)
    });
    store
        .execute_if_changed(decided, counted.into_iter().collect())
        .await
}

/// Reviews written by `reviewer_id` since `since`, any status.
pub async fn written_since(
    store: &Store,
    reviewer_id: &PrincipalId,
    since: Timestamp,
) -> StoreResult<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM reviews WHERE reviewer_id = $1 AND created_at >= $2",
    )
    .bind(reviewer_id)
    .bind(since)
    .fetch_one(store.reader())
    .await?)
}
