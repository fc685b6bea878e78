//! The pricing slot: WIT bindings, conversions, output validation and the fallback.

use wasmtime::component::InstancePre;

use crate::policy::{DecisionSource, PriceQuote, PricingRequest};

use super::super::call::{self, CallReport, Failure, FailureKind};
use super::super::limits::{CallState, Limits};

mod bindings {
    wasmtime::component::bindgen!({
        path: "plugins/wit",
        world: "pricing-policy",
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

pub use bindings::exports::gpu_market::policy::pricing as wit;

pub type Pre = bindings::PricingPolicyPre<CallState>;

/// A multiplier above this is not a price, it is a bug; the guardrails then never see it.
const MAX_SANE_MULTIPLIER: f64 = 1000.0;

pub fn pre(instance_pre: InstancePre<CallState>) -> wasmtime::Result<Pre> {
    Pre::new(instance_pre)
}

pub fn to_wit(request: &PricingRequest, previous_multiplier: Option<f64>) -> wit::PricingRequest {
    let PricingRequest {
        gpu,
        market,
        request: asked,
        time,
    } = request;
    wit::PricingRequest {
        gpu: wit::GpuFacts {
            gpu_id: gpu.gpu_id.clone(),
            model: gpu.model.clone(),
            memory_gb: gpu.memory_gb,
            region: gpu.region.clone(),
            base_price: gpu.base_price,
        },
        market: wit::MarketFacts {
            total_gpus: market.total_gpus,
            available_gpus: market.available_gpus,
            booked_gpus: market.booked_gpus,
            utilization: market.utilization,
            bookings_last_hour: market.bookings_last_hour,
            recent_prices: market.recent_prices.clone(),
        },
        request: wit::RequestFacts {
            duration_hours: asked.duration_hours,
            start_unix: asked.start_unix,
        },
        time: wit::TimeFacts {
            now_unix: time.now_unix,
            hour_of_day: time.hour_of_day,
            weekday: time.weekday,
        },
        previous_multiplier,
    }
}

/// Bytes of variable-size data the request carries into the guest (strings and lists).
pub fn input_size(request: &wit::PricingRequest) -> usize {
    let gpu = &request.gpu;
    64 + gpu.gpu_id.len()
        + gpu.model.len()
        + gpu.region.as_ref().map_or(0, String::len)
        + 8 * request.market.recent_prices.len()
}

pub fn call_one(
    pre: &Pre,
    limits: &Limits,
    config: &[(String, String)],
    request: &wit::PricingRequest,
) -> CallReport<Result<wit::PriceQuote, String>> {
    call::run(limits, limits.fuel, |store| {
        let instance = pre.instantiate(&mut *store)?;
        instance
            .gpu_market_policy_pricing()
            .call_quote(&mut *store, config, request)
    })
}

pub fn call_batch(
    pre: &Pre,
    limits: &Limits,
    config: &[(String, String)],
    requests: &[wit::PricingRequest],
) -> CallReport<Vec<Result<wit::PriceQuote, String>>> {
    let fuel = limits.fuel.saturating_mul(requests.len().max(1) as u64);
    let mut report = call::run(limits, fuel, |store| {
        let instance = pre.instantiate(&mut *store)?;
        instance
            .gpu_market_policy_pricing()
            .call_quote_batch(&mut *store, config, requests)
    });
    if let Ok(answers) = &report.result
        && answers.len() != requests.len()
    {
        let message = format!(
            "quote-batch answered {} quotes for {} requests",
            answers.len(),
            requests.len()
        );
        report.result = Err(Failure::new(FailureKind::InvalidOutput, message));
    }
    report
}

/// Checks one answer against the contract: a finite, non-negative price, a finite positive multiplier
/// of sane size, and an explanation within the output limit.
pub fn check(
    answer: Result<wit::PriceQuote, String>,
    limits: &Limits,
) -> Result<wit::PriceQuote, Failure> {
    let quote =
        answer.map_err(|e| Failure::new(FailureKind::GuestError, call::truncate(&e, 300)))?;
    let invalid = |m: String| Err(Failure::new(FailureKind::InvalidOutput, m));
    if !quote.price_per_hour.is_finite() || quote.price_per_hour < 0.0 {
        return invalid(format!(
            "price {} is not a finite, non-negative number",
            quote.price_per_hour
        ));
    }
    if !quote.multiplier.is_finite()
        || quote.multiplier <= 0.0
        || quote.multiplier > MAX_SANE_MULTIPLIER
    {
        return invalid(format!(
            "multiplier {} is outside (0, {MAX_SANE_MULTIPLIER}]",
            quote.multiplier
        ));
    }
    if quote.explanation.len() > limits.max_output_bytes {
        return invalid(format!(
            "explanation is {} bytes, the limit is {}",
            quote.explanation.len(),
            limits.max_output_bytes
        ));
    }
    Ok(quote)
}

/// The slot's fallback: the miner's asking price.
pub fn fallback(request: &PricingRequest, policy: &str, failure: &Failure) -> PriceQuote {
    PriceQuote {
        price_per_hour: request.gpu.base_price,
        multiplier: 1.0,
        explanation: format!(
            "asking price (pricing policy unavailable: {})",
            failure.kind
        ),
        source: DecisionSource {
            policy: policy.to_owned(),
            fallback: true,
        },
    }
}

/// A small request used to exercise a module when `policies.toml` lists no samples.
pub fn default_sample() -> serde_json::Value {
    serde_json::json!({
        "gpu": { "gpu_id": "gpu_sample", "model": "RTX 4090", "memory_gb": 24.0, "region": "eu-west", "base_price": 1.0 },
        "market": { "total_gpus": 4, "available_gpus": 1, "booked_gpus": 3, "utilization": 0.75,
                    "bookings_last_hour": 2, "recent_prices": [0.9, 1.0, 1.1] },
        "request": { "duration_hours": 2.0, "start_unix": 1_767_225_600 },
        "time": { "now_unix": 1_767_225_600, "hour_of_day": 0, "weekday": 3 }
    })
}
