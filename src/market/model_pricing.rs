//! Per-model price statistics, history and a live quote (the pricing endpoint), and the price a new
//! GPU should ask when its miner names none.

use serde::Serialize;
use utoipa::ToSchema;

use super::Market;
use super::quote::quote_for;
use super::rules::pricing::{accept_quote, gpu_facts, pricing_request};
use super::rules::{facts, history, stats};
use crate::domain::{Gpu, ModelFilter, Money, Timestamp};
use crate::error::{Error, Result};
use crate::store::{Matching, gpus, prices};

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

/// A GPU standing for the whole set in a quote: the cheapest one, asking the median price. It is
/// quoted as never booked (its row's guardrail state belongs to the real GPU), and the quote is not
/// kept.
fn representative(cheapest: Gpu, median: Money) -> Gpu {
    Gpu {
        asking_price: median,
        ..cheapest
    }
}

/// Statistics and a live quote for the GPUs matching `model` (as the list filter does) or having it as a
/// capability. The figures come from the database (`gpus::price_statistics`): kept counts and sums,
/// the ends and the middle of the models' price indexes, not the GPUs.
pub async fn model_pricing(market: &Market, model: &str) -> Result<ModelPricing> {
    let matching = Matching::ModelOrCapability(ModelFilter::parse(model), model.to_owned());
    let not_found = || Error::not_found(format!("no GPUs match model {model}"));
    let statistics = gpus::price_statistics(&market.store, &matching)
        .await?
        .ok_or_else(not_found)?;
    let median = stats::median(&statistics.middle_asking).ok_or_else(not_found)?;
    let now = Timestamp::now();
    let keys = &statistics.model_keys;
    let counts = statistics.counts;
    let market_facts = market
        .facts
        .market_facts(&market.store, counts, keys, now)
        .await?;
    let gpu = representative(statistics.cheapest, median);
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
    let current_price = if counts.available == 0 {
        quote.price
    } else {
        Money::mean(
            i128::from(statistics.available_current_sum),
            i128::from(counts.available),
        )
    };
    let points = usize::try_from(market.config.pricing.history_points).unwrap_or(usize::MAX);
    let samples = prices::latest(&market.store, keys, points).await?;
    Ok(ModelPricing {
        model: model.to_owned(),
        min_price: statistics.min_asking,
        max_price: statistics.max_asking,
        average_price: Money::mean(i128::from(statistics.asking_sum), i128::from(counts.total)),
        median_price: median,
        total_gpus: market_facts.total_gpus,
        available_gpus: market_facts.available_gpus,
        utilization: facts::utilization(counts),
        demand_multiplier: quote.multiplier,
        current_price,
        recommended_price: quote.price,
        recommended_gpu: statistics.cheapest_available.map(|g| g.id.to_string()),
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
    let matching = Matching::Model(ModelFilter::parse(model_key));
    let Some(statistics) = gpus::price_statistics(&market.store, &matching).await? else {
        return Ok(None);
    };
    let Some(median) = stats::median(&statistics.middle_asking) else {
        return Ok(None);
    };
    let gpu = representative(statistics.cheapest, median);
    Ok(Some(
        quote_for(market, &gpu, 1.0, Timestamp::now()).await?.price,
    ))
}
