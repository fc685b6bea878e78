//! The market facts a pricing policy sees, and short-lived copies of the expensive ones.
//!
//! Status counts are read fresh for every quote (one indexed query). The booking rate of the last hour
//! and the recent price history change slowly but cost a scan that grows with the market, so each
//! replica keeps them for a few seconds: a quote may see a booking rate up to `FACTS_TTL` old.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Money;
use super::time::MICROS_PER_SECOND;
use crate::error::Result;
use crate::policy::MarketFacts;
use crate::store::gpus::StatusCounts;
use crate::store::{Store, bookings, prices};

/// How many history points a policy sees as `recent_prices`.
const RECENT_PRICE_POINTS: i64 = 12;
const FACTS_TTL: Duration = Duration::from_secs(2);
const MAX_KEYS: usize = 1_024;

/// Values per set of model keys, each valid for `FACTS_TTL`.
struct TtlMap<V> {
    entries: Mutex<HashMap<Vec<String>, (Instant, V)>>,
}

impl<V: Clone> TtlMap<V> {
    fn get(&self, keys: &[String]) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        let (at, value) = entries.get(keys)?;
        (at.elapsed() < FACTS_TTL).then(|| value.clone())
    }

    fn put(&self, keys: &[String], value: V) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_KEYS {
                entries.clear();
            }
            entries.insert(keys.to_vec(), (Instant::now(), value));
        }
    }
}

impl<V> Default for TtlMap<V> {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
        }
    }
}

#[derive(Clone, Default)]
pub struct FactsCache {
    recent_prices: Arc<TtlMap<Vec<f64>>>,
    bookings_last_hour: Arc<TtlMap<i64>>,
}

impl FactsCache {
    async fn recent_prices(&self, store: &Store, keys: &[String]) -> Result<Vec<f64>> {
        if let Some(prices) = self.recent_prices.get(keys) {
            return Ok(prices);
        }
        let prices: Vec<f64> = prices::history(store, keys, RECENT_PRICE_POINTS)
            .await?
            .into_iter()
            .map(|s| Money::from_micros(s.average_price_micro).as_units())
            .collect();
        self.recent_prices.put(keys, prices.clone());
        Ok(prices)
    }

    async fn bookings_last_hour(&self, store: &Store, keys: &[String], now: i64) -> Result<i64> {
        if let Some(count) = self.bookings_last_hour.get(keys) {
            return Ok(count);
        }
        let since = now - 3600 * MICROS_PER_SECOND;
        let mut count = 0;
        for key in keys {
            count += bookings::started_since(store, key, since).await?;
        }
        self.bookings_last_hour.put(keys, count);
        Ok(count)
    }

    /// The facts for GPUs of the models `keys` whose statuses are counted in `counts`.
    pub async fn market_facts(
        &self,
        store: &Store,
        counts: StatusCounts,
        keys: &[String],
        now: i64,
    ) -> Result<MarketFacts> {
        let to_u32 = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
        let capacity = counts.available + counts.booked;
        Ok(MarketFacts {
            total_gpus: to_u32(counts.total),
            available_gpus: to_u32(counts.available),
            booked_gpus: to_u32(counts.booked),
            utilization: if capacity == 0 {
                0.0
            } else {
                counts.booked as f64 / capacity as f64
            },
            bookings_last_hour: to_u32(self.bookings_last_hour(store, keys, now).await?),
            recent_prices: self.recent_prices(store, keys).await?,
        })
    }
}
