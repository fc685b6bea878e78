//! Per-model price history samples.

use sqlx::FromRow;

use super::Store;

#[derive(Debug, Clone, FromRow)]
pub struct PriceSample {
    pub bucket: i64,
    pub average_price_micro: i64,
}

/// Records the average asking price of every model for the time bucket `bucket` (unix seconds); a later
/// sample in the same bucket (from this or another replica) replaces the earlier one.
pub async fn record_bucket(store: &Store, bucket: i64, now: i64) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO price_samples (model_key, bucket, model, average_price_micro, gpu_count, recorded_at) \
         SELECT model_key, $1, MIN(model), CAST(ROUND(AVG(price_micro)) AS BIGINT), COUNT(*), $2 \
         FROM gpus WHERE deleted_at IS NULL GROUP BY model_key \
         ON CONFLICT (model_key, bucket) DO UPDATE SET model = excluded.model, \
         average_price_micro = excluded.average_price_micro, gpu_count = excluded.gpu_count, \
         recorded_at = excluded.recorded_at",
    )
    .bind(bucket)
    .bind(now)
    .execute(store.writer())
    .await?;
    Ok(result.rows_affected())
}

/// The latest `points` samples of the models matching `model_like`, averaged per bucket, oldest first.
pub async fn history(
    store: &Store,
    model_keys: &[String],
    points: i64,
) -> Result<Vec<PriceSample>, sqlx::Error> {
    if model_keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = super::Sql::new(
        "SELECT bucket, CAST(ROUND(SUM(average_price_micro * gpu_count) * 1.0 / SUM(gpu_count)) AS BIGINT) \
         AS average_price_micro FROM price_samples WHERE model_key IN (",
    );
    for (i, key) in model_keys.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(key.clone());
    }
    sql.push(") GROUP BY bucket ORDER BY bucket DESC LIMIT ")
        .bind(points);
    let (text, args) = sql.into_parts();
    let mut samples: Vec<PriceSample> = sqlx::query_as_with(&text, args)
        .fetch_all(store.reader())
        .await?;
    samples.reverse();
    Ok(samples)
}
