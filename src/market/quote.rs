//! Quotes through the pricing policy for one GPU, with the market facts of its model. Quoting never
//! writes: the guardrails' state a quote returns is kept only when the quote is booked.

use super::Market;
use super::rules::pricing::{Quote, accept_quote, gpu_facts, pricing_request};
use crate::domain::{Gpu, PriceState, StatusCounts, Timestamp};
use crate::error::Result;
use crate::store::gpus;

/// A fresh quote for `gpu` as if it had never been booked (a new GPU, or a GPU standing for a model):
/// the guardrails see no earlier quote.
pub async fn quote_for(
    market: &Market,
    gpu: &Gpu,
    duration_hours: f64,
    now: Timestamp,
) -> Result<Quote> {
    let counts = gpus::status_counts(&market.store, Some(&gpu.model_key)).await?;
    quote_with_counts(market, gpu, counts, duration_hours, now, None).await
}

/// A fresh quote for `gpu` given its model's status counts and its remembered price state.
pub async fn quote_with_counts(
    market: &Market,
    gpu: &Gpu,
    counts: StatusCounts,
    duration_hours: f64,
    now: Timestamp,
    previous: Option<PriceState>,
) -> Result<Quote> {
    let keys = [gpu.model_key.clone()];
    let facts = market
        .facts
        .market_facts(&market.store, counts, &keys, now)
        .await?;
    let quote = market
        .policies
        .quote(pricing_request(
            gpu_facts(gpu),
            facts,
            duration_hours,
            now,
            previous,
        ))
        .await;
    Ok(accept_quote(gpu.asking_price, quote))
}
