//! Per-model price statistics, history and a live quote (the pricing endpoint), and the price a new
//! GPU should ask when its miner names none.

use serde::Serialize;
use utoipa::ToSchema;

use super::Market;
use super::quote::quote_for;
use super::rules::pricing::{accept_quote, gpu_facts, pricing_request};
use super::rules::{facts, history, stats};
use crate::domain::{Gpu, GpuStatus, ModelFilter, Money, StatusCounts, Timestamp};
use crate::error::{Error, Result};
use crate::store::{GpuFilter, GpuOrder, Matching, Page, gpus, prices};

/// Upper bound of GPUs one statistic looks at.
const MAX_MODEL_GPUS: i64 = 100_000;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PricePoint {
    pub time: Timestamp,
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
    pub min_price: Money,
    pub max_price: Money,
    pub average_price: Money,
    pub median_price: Money,
    pub total_gpus: u32,
    pub available_gpus: u32,
    pub utilization: f64,
    pub demand_multiplier: f64,
    /// What booking one of these GPUs for an hour costs now, on average over the available ones.
    pub current_price: Money,
    /// What a new GPU of this model should ask: the median asking price times the demand multiplier.
    pub recommended_price: Money,
    /// The cheapest available matching GPU.
    pub recommended_gpu: Option<String>,
    pub price_history: Vec<PricePoint>,
    pub policy: PolicyInfo,
}

async fn matching_gpus(market: &Market, matching: Matching) -> Result<Vec<Gpu>> {
    let filter = GpuFilter {
        matching,
        ..GpuFilter::default()
    };
    Ok(gpus::list(
        &market.store,
        &filter,
        GpuOrder::CurrentPriceAsc,
        Page::first(MAX_MODEL_GPUS),
    )
    .await?)
}

/// A GPU standing for the whole set in a quote: the first one, asking the median price. It is quoted
/// as never booked (its row's guardrail state belongs to the real GPU), and the quote is not kept.
fn representative(rows: &[Gpu], median: Money) -> Option<Gpu> {
    rows.first().map(|gpu| Gpu {
        asking_price: median,
        ..gpu.clone()
    })
}

/// Statistics and a live quote for the GPUs matching `model` (as the list filter does) or having it as a
/// capability.
pub async fn model_pricing(market: &Market, model: &str) -> Result<ModelPricing> {
    let matching = Matching::ModelOrCapability(ModelFilter::parse(model), model.to_owned());
    let rows = matching_gpus(market, matching).await?;
    let asking: Vec<Money> = rows.iter().map(|g| g.asking_price).collect();
    let (Some(median), Some(min), Some(max)) = (
        stats::median(&asking),
        asking.iter().min().copied(),
        asking.iter().max().copied(),
    ) else {
        return Err(Error::not_found(format!("no GPUs match model {model}")));
    };
    let now = Timestamp::now();
    let mut keys: Vec<String> = rows.iter().map(|g| g.model_key.clone()).collect();
    keys.sort();
    keys.dedup();
    let counts = StatusCounts::of(rows.iter().map(|g| g.status));
    let market_facts = market
        .facts
        .market_facts(&market.store, counts, &keys, now)
        .await?;
    let gpu = representative(&rows, median).ok_or_else(|| Error::not_found("no GPUs"))?;
    let quote = accept_quote(
        median,
        market
            .policies
            .quote(pricing_request(
                gpu_facts(&gpu),
                market_facts.clone(),
                1.0,
                now,
                None,
            ))
            .await,
    );
    let available: Vec<&Gpu> = rows
        .iter()
        .filter(|g| g.status == GpuStatus::Available)
        .collect();
    let current_price = if available.is_empty() {
        quote.price
    } else {
        Money::average(available.iter().map(|g| g.current_price))
    };
    let points = usize::try_from(market.config.pricing.history_points).unwrap_or(usize::MAX);
    let samples = prices::latest(&market.store, &keys, points).await?;
    Ok(ModelPricing {
        model: model.to_owned(),
        min_price: min,
        max_price: max,
        average_price: Money::average(asking.iter().copied()),
        median_price: median,
        total_gpus: market_facts.total_gpus,
        available_gpus: market_facts.available_gpus,
        utilization: facts::utilization(counts),
        demand_multiplier: quote.multiplier,
        current_price,
        recommended_price: quote.price,
        recommended_gpu: available.first().map(|g| g.id.to_string()),
        price_history: history::combine(&samples, points)
            .into_iter()
            .map(|p| PricePoint {
                time: Timestamp::from_unix_seconds(p.bucket),
                average_price: p.average_price,
            })
            .collect(),
        policy: PolicyInfo {
            version: quote.source.policy,
            fallback: quote.source.fallback,
        },
    })
}

/// The price a new GPU of `model_key`'s family should ask, or None when the market has no such GPU.
pub async fn recommended_price(market: &Market, model_key: &str) -> Result<Option<Money>> {
    let rows = matching_gpus(market, Matching::Model(ModelFilter::parse(model_key))).await?;
    let asking: Vec<Money> = rows.iter().map(|g| g.asking_price).collect();
    let Some(gpu) = stats::median(&asking).and_then(|median| representative(&rows, median)) else {
        return Ok(None);
    };
    Ok(Some(
        quote_for(market, &gpu, 1.0, Timestamp::now()).await?.price,
    ))
}
