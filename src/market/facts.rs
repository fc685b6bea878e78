//! Reading the market facts a pricing policy sees. Status counts are read fresh for every quote (one
//! row of `gpu_model_counts`, kept by triggers). The booking rate of the last hour and the recent price
//! history change slowly and cost a count that grows with the bookings of the hour (one index range
//! per model), so each replica keeps them for a few seconds: a quote may see a booking rate up to
//! `FACTS_TTL` old. The facts themselves are computed by [`rules`].
//!
//! [`rules`]: super::rules

use std::time::Duration;

use moka::sync::Cache;

use super::rules::{facts, history};
use crate::domain::{StatusCounts, Timestamp};
use crate::error::Result;
use crate::policy::MarketFacts;
use crate::store::{Store, bookings, prices};

const FACTS_TTL: Duration = Duration::from_secs(2);
/// Distinct model sets cached; the least recently used go first.
const MAX_MODEL_SETS: u64 = 1_024;

/// The slow-moving facts of one set of models.
#[derive(Debug, Clone)]
struct SlowFacts {
    bookings_last_hour: i64,
    recent_prices: Vec<f64>,
}

#[derive(Clone)]
pub struct FactsCache {
    slow: Cache<Vec<String>, SlowFacts>,
}

impl Default for FactsCache {
    fn default() -> Self {
        Self {
            slow: Cache::builder()
                .max_capacity(MAX_MODEL_SETS)
                .time_to_live(FACTS_TTL)
                .build(),
        }
    }
}

impl FactsCache {
    async fn slow_facts(
        &self,
        store: &Store,
        keys: &[String],
        now: Timestamp,
    ) -> Result<SlowFacts> {
        if let Some(cached) = self.slow.get(keys) {
            return Ok(cached);
        }
        let samples = prices::latest(store, keys, facts::RECENT_PRICE_POINTS).await?;
        let points = history::combine(&samples, facts::RECENT_PRICE_POINTS);
        let fresh = SlowFacts {
            bookings_last_hour: bookings::started_since(
                store,
                keys,
                facts::booking_rate_since(now),
            )
            .await?,
            recent_prices: history::recent_prices(&points),
        };
        self.slow.insert(keys.to_vec(), fresh.clone());
        Ok(fresh)
    }

    /// The facts for GPUs of the models `keys` whose statuses are counted in `counts`.
    pub async fn market_facts(
        &self,
        store: &Store,
        counts: StatusCounts,
        keys: &[String],
        now: Timestamp,
    ) -> Result<MarketFacts> {
        let slow = self.slow_facts(store, keys, now).await?;
        Ok(facts::market_facts(
            counts,
            slow.bookings_last_hour,
            slow.recent_prices,
        ))
    }
}
