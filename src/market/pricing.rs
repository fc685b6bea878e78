//! Prices: quotes through the pricing policy, the catalogue's current prices, per-model statistics and
//! history. The policy is asked for whole models in one batch off the request path; `list` only reads
//! the stored result.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::model_match::{capability_pattern, like_pattern};
use super::time::{MICROS_PER_SECOND, now_micros, rfc3339, to_datetime, unix_seconds};
use super::{Market, Money};
use crate::error::{Error, Result};
use crate::policy::{
    DecisionSource, GpuFacts, MarketFacts, PricingRequest, RequestFacts, TimeFacts,
};
use crate::store::gpus::{self, GpuQuery, GpuRow, StatusCounts};
use crate::store::prices;

/// Upper bound of GPUs one statistic or refresh looks at.
const MAX_MODEL_GPUS: i64 = 100_000;
/// Market events arriving within this window are folded into one refresh: under a booking storm the
/// catalogue is repriced at most a few times a second instead of after every booking.
const REFRESH_DEBOUNCE: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct Quote {
    pub price: Money,
    pub multiplier: f64,
    pub explanation: String,
    pub source: DecisionSource,
}

fn counts_of(rows: &[GpuRow]) -> StatusCounts {
    let count = |status: &str| rows.iter().filter(|g| g.status == status).count() as i64;
    StatusCounts {
        total: rows.len() as i64,
        available: count("available"),
        booked: count("booked"),
        offline: count("offline"),
    }
}

/// The market facts for the GPUs counted in `counts`, of the models `keys`.
async fn market_facts(
    market: &Market,
    counts: StatusCounts,
    keys: &[String],
    now: i64,
) -> Result<MarketFacts> {
    market
        .facts
        .market_facts(&market.store, counts, keys, now)
        .await
}

fn exact_model(model_key: &str) -> GpuQuery {
    let escaped: String = model_key
        .chars()
        .flat_map(|c| {
            if matches!(c, '%' | '_' | '\\') {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect();
    GpuQuery {
        model_like: Some(escaped),
        order_by: "id ASC",
        ..GpuQuery::default()
    }
}

fn request_for(gpu: &GpuRow, facts: MarketFacts, duration_hours: f64, now: i64) -> PricingRequest {
    PricingRequest {
        gpu: GpuFacts {
            gpu_id: gpu.id.clone(),
            model: gpu.model.clone(),
            memory_gb: gpu.memory_gb,
            region: gpu.region.clone(),
            base_price: Money::from_micros(gpu.price_micro).as_units(),
        },
        market: facts,
        request: RequestFacts {
            duration_hours,
            start_unix: unix_seconds(now),
        },
        time: TimeFacts::at(to_datetime(now)),
    }
}

/// A policy's price, made safe to store: a price that is not a positive finite amount (a policy bug the
/// host guardrails should already have caught) falls back to the asking price.
fn to_quote(gpu_price_micro: i64, quote: crate::policy::PriceQuote) -> Quote {
    match Money::from_units(quote.price_per_hour) {
        Some(price) if price > Money::ZERO => Quote {
            price,
            multiplier: quote.multiplier,
            explanation: quote.explanation,
            source: quote.source,
        },
        _ => Quote {
            price: Money::from_micros(gpu_price_micro),
            multiplier: 1.0,
            explanation: "asking price (policy returned no usable price)".to_owned(),
            source: DecisionSource {
                policy: quote.source.policy,
                fallback: true,
            },
        },
    }
}

/// A fresh quote for booking `gpu` for `duration_hours` starting now.
pub async fn quote_for(
    market: &Market,
    gpu: &GpuRow,
    duration_hours: f64,
    now: i64,
) -> Result<Quote> {
    let counts = gpus::status_counts(&market.store, Some(&gpu.model_key)).await?;
    quote_with_counts(market, gpu, counts, duration_hours, now).await
}

/// A fresh quote for `gpu` given its model's status counts.
pub async fn quote_with_counts(
    market: &Market,
    gpu: &GpuRow,
    counts: StatusCounts,
    duration_hours: f64,
    now: i64,
) -> Result<Quote> {
    let keys = [gpu.model_key.clone()];
    let facts = market_facts(market, counts, &keys, now).await?;
    let quote = market
        .policies
        .quote(request_for(gpu, facts, duration_hours, now))
        .await;
    Ok(to_quote(gpu.price_micro, quote))
}

/// Recomputes the current price of every GPU of one model with one batch call.
pub async fn refresh_model(market: &Market, model_key: &str, now: i64) -> Result<usize> {
    let rows = gpus::list(
        &market.store,
        &GpuQuery {
            limit: MAX_MODEL_GPUS,
            ..exact_model(model_key)
        },
    )
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let keys = [model_key.to_owned()];
    let facts = market_facts(market, counts_of(&rows), &keys, now).await?;
    let requests = rows
        .iter()
        .map(|gpu| request_for(gpu, facts.clone(), 1.0, now))
        .collect();
    let quotes = market.policies.quote_batch(requests).await;
    let changed: Vec<(String, i64)> = rows
        .iter()
        .zip(quotes)
        .map(|(gpu, quote)| (gpu, to_quote(gpu.price_micro, quote)))
        .filter(|(gpu, quote)| quote.price.micros() != gpu.current_price_micro)
        .map(|(gpu, quote)| (gpu.id.clone(), quote.price.micros()))
        .collect();
    gpus::update_current_prices(&market.store, &changed).await?;
    Ok(changed.len())
}

pub async fn refresh_all(market: &Market) -> Result<()> {
    let now = now_micros();
    for key in gpus::model_keys(&market.store).await? {
        refresh_model(market, &key, now).await?;
    }
    Ok(())
}

/// Models whose prices need recomputing after a market event (register, book, release, expiry).
#[derive(Clone, Default)]
pub struct PriceRefresher {
    dirty: Arc<Mutex<HashSet<String>>>,
    wake: Arc<Notify>,
    /// The history bucket this replica last recorded; events record the first sample of a new one.
    last_bucket: Arc<AtomicI64>,
}

impl PriceRefresher {
    pub fn mark_dirty(&self, model_key: &str) {
        if let Ok(mut dirty) = self.dirty.lock() {
            dirty.insert(model_key.to_owned());
        }
        self.wake.notify_one();
    }

    fn take_dirty(&self) -> Vec<String> {
        self.dirty
            .lock()
            .map(|mut dirty| dirty.drain().collect())
            .unwrap_or_default()
    }
}

/// Background task: refreshes dirty models shortly after market events, everything on a timer, and
/// records the price history.
pub async fn run_refresher(market: Market, shutdown: CancellationToken) {
    let mut full = tokio::time::interval(Duration::from_millis(
        market.config.pricing.refresh_interval_ms,
    ));
    let mut history = tokio::time::interval(Duration::from_secs(
        market.config.pricing.history_interval_seconds,
    ));
    let wake = market.prices.wake.clone();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = full.tick() => {
                if let Err(err) = refresh_all(&market).await {
                    tracing::warn!(error = %err, "price refresh failed");
                }
            }
            _ = history.tick() => {
                if let Err(err) = record_history(&market).await {
                    tracing::warn!(error = %err, "recording price history failed");
                }
            }
            () = wake.notified() => {
                tokio::time::sleep(REFRESH_DEBOUNCE).await;
                let now = now_micros();
                for key in market.prices.take_dirty() {
                    if let Err(err) = refresh_model(&market, &key, now).await {
                        tracing::warn!(model = %key, error = %err, "price refresh failed");
                    }
                }
                if let Err(err) = record_history_if_new_bucket(&market).await {
                    tracing::warn!(error = %err, "recording price history failed");
                }
            }
        }
    }
}

pub async fn record_history(market: &Market) -> Result<u64> {
    let now = now_micros();
    let interval = market.config.pricing.history_interval_seconds as i64;
    let bucket = unix_seconds(now).div_euclid(interval) * interval;
    market.prices.last_bucket.store(bucket, Ordering::Release);
    Ok(prices::record_bucket(&market.store, bucket, now).await?)
}

/// Records history after market events only when they open a new bucket; the timer does the rest.
async fn record_history_if_new_bucket(market: &Market) -> Result<()> {
    let interval = market.config.pricing.history_interval_seconds as i64;
    let bucket = unix_seconds(now_micros()).div_euclid(interval) * interval;
    if market.prices.last_bucket.load(Ordering::Acquire) != bucket {
        record_history(market).await?;
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PricePoint {
    pub time: String,
    #[schema(value_type = f64)]
    pub average_price: Money,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyInfo {
    pub version: String,
    pub fallback: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelPricing {
    pub model: String,
    #[schema(value_type = f64)]
    pub min_price: Money,
    #[schema(value_type = f64)]
    pub max_price: Money,
    #[schema(value_type = f64)]
    pub average_price: Money,
    #[schema(value_type = f64)]
    pub median_price: Money,
    pub total_gpus: u32,
    pub available_gpus: u32,
    pub utilization: f64,
    pub demand_multiplier: f64,
    /// What booking one of these GPUs for an hour costs now, on average over the available ones.
    #[schema(value_type = f64)]
    pub current_price: Money,
    /// What a new GPU of this model should ask: the median asking price times the demand multiplier.
    #[schema(value_type = f64)]
    pub recommended_price: Money,
    /// The cheapest available matching GPU.
    pub recommended_gpu: Option<String>,
    pub price_history: Vec<PricePoint>,
    pub policy: PolicyInfo,
}

fn median(sorted: &[i64]) -> i64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2] + 1) / 2
    }
}

fn average(values: impl Iterator<Item = i64>) -> i64 {
    let (sum, count) = values.fold((0i128, 0i128), |(s, c), v| (s + v as i128, c + 1));
    if count == 0 {
        0
    } else {
        ((sum + count / 2) / count) as i64
    }
}

fn matching(pattern: &str, capability: Option<String>) -> GpuQuery {
    GpuQuery {
        model_like: Some(pattern.to_owned()),
        capability_like: capability,
        model_or_capability: true,
        order_by: "current_price_micro ASC, id ASC",
        limit: MAX_MODEL_GPUS,
        ..GpuQuery::default()
    }
}

/// Statistics and a live quote for the GPUs matching `model` (as the list filter does) or having it as a
/// capability.
pub async fn model_pricing(market: &Market, model: &str) -> Result<ModelPricing> {
    let query = matching(&like_pattern(model), Some(capability_pattern(model)));
    let rows = gpus::list(&market.store, &query).await?;
    if rows.is_empty() {
        return Err(Error::not_found(format!("no GPUs match model {model}")));
    }
    let now = now_micros();
    let mut keys: Vec<String> = rows.iter().map(|g| g.model_key.clone()).collect();
    keys.sort();
    keys.dedup();
    let facts = market_facts(market, counts_of(&rows), &keys, now).await?;
    let mut asking: Vec<i64> = rows.iter().map(|g| g.price_micro).collect();
    asking.sort_unstable();
    let median_micro = median(&asking);
    let representative = GpuRow {
        price_micro: median_micro,
        ..rows[0].clone()
    };
    let quote = to_quote(
        median_micro,
        market
            .policies
            .quote(request_for(&representative, facts.clone(), 1.0, now))
            .await,
    );
    let available: Vec<&GpuRow> = rows.iter().filter(|g| g.status == "available").collect();
    let current_price = if available.is_empty() {
        quote.price
    } else {
        Money::from_micros(average(available.iter().map(|g| g.current_price_micro)))
    };
    let history = prices::history(
        &market.store,
        &keys,
        i64::from(market.config.pricing.history_points),
    )
    .await?;
    Ok(ModelPricing {
        model: model.to_owned(),
        min_price: Money::from_micros(asking[0]),
        max_price: Money::from_micros(asking[asking.len() - 1]),
        average_price: Money::from_micros(average(asking.iter().copied())),
        median_price: Money::from_micros(median_micro),
        total_gpus: facts.total_gpus,
        available_gpus: facts.available_gpus,
        utilization: facts.utilization,
        demand_multiplier: quote.multiplier,
        current_price,
        recommended_price: quote.price,
        recommended_gpu: available.first().map(|g| g.id.clone()),
        price_history: history
            .into_iter()
            .map(|s| PricePoint {
                time: rfc3339(s.bucket * MICROS_PER_SECOND),
                average_price: Money::from_micros(s.average_price_micro),
            })
            .collect(),
        policy: PolicyInfo {
            version: quote.source.policy,
            fallback: quote.source.fallback,
        },
    })
}

/// The price a new GPU matching `pattern` should ask, or None when the market has no such GPU.
pub async fn recommended_price(market: &Market, pattern: &str) -> Result<Option<Money>> {
    let query = GpuQuery {
        capability_like: None,
        model_or_capability: false,
        ..matching(pattern, None)
    };
    let rows = gpus::list(&market.store, &query).await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut asking: Vec<i64> = rows.iter().map(|g| g.price_micro).collect();
    asking.sort_unstable();
    let representative = GpuRow {
        price_micro: median(&asking),
        ..rows[0].clone()
    };
    Ok(Some(
        quote_for(market, &representative, 1.0, now_micros())
            .await?
            .price,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_count_rounds_half_up() {
        assert_eq!(median(&[1, 2]), 2);
        assert_eq!(median(&[1, 3, 10]), 3);
        assert_eq!(median(&[2, 4, 6, 8]), 5);
    }

    #[test]
    fn average_is_exact_integer_rounding() {
        assert_eq!(average([1, 2].into_iter()), 2);
        assert_eq!(average([333_333, 333_333, 333_334].into_iter()), 333_333);
        assert_eq!(average(std::iter::empty()), 0);
    }
}
