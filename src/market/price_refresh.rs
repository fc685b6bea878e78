//! Keeping the catalogue's current prices and the price history up to date. The policy is asked for a
//! whole model in one batch off the request path; `list` only reads the stored result.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Market;
use super::rules::history::{bucket_of, samples_for_bucket};
use super::rules::pricing::{accept_quote, pricing_request, repricing_facts};
use crate::domain::{StatusCounts, Timestamp};
use crate::error::Result;
use crate::store::{gpus, price_state, prices};

/// Upper bound of GPUs one refresh looks at.
const MAX_MODEL_GPUS: i64 = 100_000;
/// Market events arriving within this window are folded into one refresh: under a booking storm the
/// catalogue is repriced at most a few times a second instead of after every booking.
const REFRESH_DEBOUNCE: Duration = Duration::from_millis(200);
/// The pause before the next event-driven pass, in multiples of the last pass's duration.
const REFRESH_PAUSE_FACTOR: u32 = 3;

/// What a refresh did: GPUs quoted, and those whose current price changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refreshed {
    pub quoted: usize,
    pub changed: usize,
}

/// Recomputes the current price of every GPU of one model with one batch call.
pub async fn refresh_model(market: &Market, model_key: &str, now: Timestamp) -> Result<Refreshed> {
    let rows = gpus::for_repricing(&market.store, model_key, MAX_MODEL_GPUS).await?;
    if rows.is_empty() {
        return Ok(Refreshed::default());
    }
    let keys = [model_key.to_owned()];
    let counts = StatusCounts::of(rows.iter().map(|g| g.status));
    let facts = market
        .facts
        .market_facts(&market.store, counts, &keys, now)
        .await?;
    // Read, never written: the catalogue shows what booking now would cost.
    let states = price_state::for_model(&market.store, model_key).await?;
    let requests = rows
        .iter()
        .map(|gpu| {
            let previous = states.get(gpu.id.as_str()).copied();
            pricing_request(repricing_facts(gpu), facts.clone(), 1.0, now, previous)
        })
        .collect();
    let quotes = market.policies.quote_batch(requests).await;
    let changed: Vec<_> = rows
        .iter()
        .zip(quotes)
        .map(|(gpu, quote)| (gpu, accept_quote(gpu.asking_price, quote).price))
        .filter(|(gpu, price)| *price != gpu.current_price)
        .map(|(gpu, price)| (gpu.id.clone(), price))
        .collect();
    if !changed.is_empty() {
        gpus::update_current_prices(&market.store, &changed).await?;
        market.catalogue_changed();
    }
    Ok(Refreshed {
        quoted: rows.len(),
        changed: changed.len(),
    })
}

/// Reprices the whole catalogue, model by model, and reports how long it took in the metrics.
pub async fn refresh_all(market: &Market) -> Result<Refreshed> {
    let started = Instant::now();
    let now = Timestamp::now();
    let mut total = Refreshed::default();
    for key in gpus::model_keys(&market.store).await? {
        let model = refresh_model(market, &key, now).await?;
        total.quoted += model.quoted;
        total.changed += model.changed;
    }
    let seconds = started.elapsed().as_secs_f64();
    let metrics = &market.metrics;
    metrics.price_refresh_seconds.set(seconds);
    metrics
        .price_refresh_gpus
        .set(i64::try_from(total.quoted).unwrap_or(i64::MAX));
    metrics.price_refreshes.inc();
    tracing::debug!(
        seconds,
        quoted = total.quoted,
        changed = total.changed,
        "catalogue repriced"
    );
    Ok(total)
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
    let mut pause = REFRESH_DEBOUNCE;
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
                tokio::time::sleep(pause).await;
                let started = Instant::now();
                let now = Timestamp::now();
                for key in market.prices.take_dirty() {
                    if let Err(err) = refresh_model(&market, &key, now).await {
                        tracing::warn!(model = %key, error = %err, "price refresh failed");
                    }
                }
                // A model's repricing costs its GPU count: on a large market under a booking storm,
                // passes back to back would take a core from the requests. Waiting three times as
                // long as the last pass took keeps repricing to about a quarter of one core.
                pause = REFRESH_DEBOUNCE.max(started.elapsed() * REFRESH_PAUSE_FACTOR);
                if let Err(err) = record_history_if_new_bucket(&market).await {
                    tracing::warn!(error = %err, "recording price history failed");
                }
            }
        }
    }
}

fn history_interval(market: &Market) -> i64 {
    i64::try_from(market.config.pricing.history_interval_seconds).unwrap_or(i64::MAX)
}

/// Records the current bucket's sample of every model.
pub async fn record_history(market: &Market) -> Result<u64> {
    let now = Timestamp::now();
    let bucket = bucket_of(now, history_interval(market));
    market.prices.last_bucket.store(bucket, Ordering::Release);
    let asking = gpus::asking_prices(&market.store).await?;
    let samples = samples_for_bucket(
        asking
            .iter()
            .map(|(key, model, price)| (key.as_str(), model.as_str(), *price)),
        bucket,
    );
    Ok(prices::record(&market.store, &samples, now).await?)
}

/// Records history after market events only when they open a new bucket; the timer does the rest.
async fn record_history_if_new_bucket(market: &Market) -> Result<()> {
    let bucket = bucket_of(Timestamp::now(), history_interval(market));
    if market.prices.last_bucket.load(Ordering::Acquire) != bucket {
        record_history(market).await?;
    }
    Ok(())
}
