//! Per-model price history samples. The samples are computed by `market::rules::history`; this
//! module only stores and reads them.

use super::sql::Sql;
use super::{Statement, Store, StoreResult};
use crate::domain::{ModelSample, Money, Timestamp};

/// Records the samples of one bucket; a later sample of the same model and bucket (from this or another
/// replica) replaces the earlier one.
pub async fn record(store: &Store, samples: &[ModelSample], now: Timestamp) -> StoreResult<u64> {
    let statements = samples
        .iter()
        .map(|sample| {
            Statement::new(
                "INSERT INTO price_samples (model_key, bucket, model, average_price_micro, gpu_count, recorded_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (model_key, bucket) DO UPDATE SET model = excluded.model, \
                 average_price_micro = excluded.average_price_micro, gpu_count = excluded.gpu_count, \
                 recorded_at = excluded.recorded_at",
            )
            .bind(&sample.model_key)
            .bind(sample.bucket)
            .bind(&sample.model)
            .bind(sample.average_price)
            .bind(sample.gpu_count)
            .bind(now)
        })
        .collect();
    store.execute_all(statements).await
}

/// The samples of `model_keys` in their latest `points` buckets.
pub async fn latest(
    store: &Store,
    model_keys: &[String],
    points: usize,
) -> StoreResult<Vec<ModelSample>> {
    if model_keys.is_empty() || points == 0 {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(
        "SELECT model_key, bucket, model, average_price_micro, gpu_count FROM price_samples \
         WHERE model_key IN ",
    );
    sql.bind_list(model_keys.iter().cloned())
        .push(" AND bucket >= (SELECT MIN(bucket) FROM (SELECT DISTINCT bucket FROM price_samples WHERE model_key IN ")
        .bind_list(model_keys.iter().cloned())
        .push(" ORDER BY bucket DESC LIMIT ")
        .bind(points as i64)
        .push(") newest)");
    let (text, args) = sql.into_parts();
    let rows: Vec<(String, i64, String, Money, i64)> = sqlx::query_as_with(&text, args)
        .fetch_all(store.reader())
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(model_key, bucket, model, average_price, gpu_count)| ModelSample {
                model_key,
                bucket,
                model,
                average_price,
                gpu_count,
            },
        )
        .collect())
}
