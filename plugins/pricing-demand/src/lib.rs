//! `pricing-demand`: the default pricing policy.
//!
//! price = base price × multiplier. The multiplier rises with the model's utilization above a threshold
//! and with the recent booking rate per GPU, falls below 1 when the model is idle (nothing booked and no
//! recent bookings), is smoothed towards the multiplier the host last quoted for the GPU, and stays
//! within the configured bounds. The host applies its own guardrails afterwards.
//!
//! Configuration keys (all optional, numbers as strings):
//! `min_multiplier` (0.8), `max_multiplier` (2.5), `utilization_threshold` (0.5),
//! `utilization_weight` (1.0), `booking_rate_weight` (0.25), `booking_rate_cap` (2.0),
//! `idle_discount` (0.1), `smoothing` (0.5; 1 = follow the target at once).

wit_bindgen::generate!({ path: "../wit", world: "pricing-policy" });

#[cfg(target_arch = "wasm32")]
mod arena;
mod number;

use exports::gpu_market::policy::pricing::{Guest, PriceQuote, PricingRequest};
use number::{parse_number, push_fixed, push_u32};

/// The formula's parameters, read from the operator's configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub min_multiplier: f64,
    pub max_multiplier: f64,
    pub utilization_threshold: f64,
    pub utilization_weight: f64,
    pub booking_rate_weight: f64,
    pub booking_rate_cap: f64,
    pub idle_discount: f64,
    pub smoothing: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            min_multiplier: 0.8,
            max_multiplier: 2.5,
            utilization_threshold: 0.5,
            utilization_weight: 1.0,
            booking_rate_weight: 0.25,
            booking_rate_cap: 2.0,
            idle_discount: 0.1,
            smoothing: 0.5,
        }
    }
}

impl Params {
    pub fn from_config(config: &[(String, String)]) -> Result<Self, String> {
        let mut params = Self::default();
        for (key, value) in config {
            let slot = match key.as_str() {
                "min_multiplier" => &mut params.min_multiplier,
                "max_multiplier" => &mut params.max_multiplier,
                "utilization_threshold" => &mut params.utilization_threshold,
                "utilization_weight" => &mut params.utilization_weight,
                "booking_rate_weight" => &mut params.booking_rate_weight,
                "booking_rate_cap" => &mut params.booking_rate_cap,
                "idle_discount" => &mut params.idle_discount,
                "smoothing" => &mut params.smoothing,
                _ => continue,
            };
            *slot = parse_number(value)
                .ok_or_else(|| format!("config {key}: {value:?} is not a number"))?;
        }
        if params.min_multiplier <= 0.0 || params.min_multiplier > params.max_multiplier {
            return Err("config: need 0 < min_multiplier <= max_multiplier".into());
        }
        if !(0.0..1.0).contains(&params.utilization_threshold) {
            return Err("config: utilization_threshold must be in [0, 1)".into());
        }
        if !(params.smoothing > 0.0 && params.smoothing <= 1.0) {
            return Err("config: smoothing must be in (0, 1]".into());
        }
        Ok(params)
    }
}

/// Room for the longest explanation, so that it is allocated once.
const EXPLANATION_CAPACITY: usize = 192;

/// The multiplier the market conditions call for, before smoothing, and why.
pub fn target_multiplier(
    params: &Params,
    utilization: f64,
    bookings_last_hour: u32,
    total_gpus: u32,
) -> (f64, String) {
    let utilization = if utilization.is_finite() {
        utilization.clamp(0.0, 1.0)
    } else {
        0.0
    };
    if utilization == 0.0 && bookings_last_hour == 0 {
        let m = 1.0 - params.idle_discount;
        let mut reason = String::with_capacity(EXPLANATION_CAPACITY);
        reason.push_str(
            "no GPU of this model is booked and none was booked in the last hour: idle discount ×",
        );
        push_fixed(&mut reason, m, 2);
        return (m, reason);
    }
    let above = (utilization - params.utilization_threshold).max(0.0)
        / (1.0 - params.utilization_threshold);
    let rate =
        (f64::from(bookings_last_hour) / f64::from(total_gpus.max(1))).min(params.booking_rate_cap);
    let m = 1.0 + params.utilization_weight * above + params.booking_rate_weight * rate;
    let mut reason = String::with_capacity(EXPLANATION_CAPACITY);
    push_fixed(&mut reason, utilization * 100.0, 0);
    reason.push_str("% of this model is booked and ");
    push_u32(&mut reason, bookings_last_hour);
    reason.push_str(" booking(s) started in the last hour: demand ×");
    push_fixed(&mut reason, m, 2);
    (m, reason)
}

/// The whole formula: target, smoothing towards the previous multiplier, bounds.
pub fn multiplier(
    params: &Params,
    utilization: f64,
    bookings_last_hour: u32,
    total_gpus: u32,
    previous: Option<f64>,
) -> (f64, String) {
    let (target, mut reason) =
        target_multiplier(params, utilization, bookings_last_hour, total_gpus);
    let mut m = match previous.filter(|p| p.is_finite() && *p > 0.0) {
        Some(prev) => {
            let smoothed = prev + params.smoothing * (target - prev);
            if (smoothed - target).abs() > 0.005 {
                reason.push_str(", moving gradually from ×");
                push_fixed(&mut reason, prev, 2);
            }
            smoothed
        }
        None => target,
    };
    if m > params.max_multiplier {
        m = params.max_multiplier;
        reason.push_str(", capped at ×");
        push_fixed(&mut reason, m, 2);
    } else if m < params.min_multiplier {
        m = params.min_multiplier;
        reason.push_str(", floored at ×");
        push_fixed(&mut reason, m, 2);
    }
    (m, reason)
}

/// What the formula reads from a request: copied out so that the request can be released before the
/// answer is allocated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Facts {
    pub base_price: f64,
    pub utilization: f64,
    pub bookings_last_hour: u32,
    pub total_gpus: u32,
    pub previous_multiplier: Option<f64>,
}

impl Facts {
    pub fn of(request: &PricingRequest) -> Self {
        Self {
            base_price: request.gpu.base_price,
            utilization: request.market.utilization,
            bookings_last_hour: request.market.bookings_last_hour,
            total_gpus: request.market.total_gpus,
            previous_multiplier: request.previous_multiplier,
        }
    }
}

pub fn quote(params: &Params, request: &PricingRequest) -> Result<PriceQuote, String> {
    quote_facts(params, &Facts::of(request))
}

pub fn quote_facts(params: &Params, facts: &Facts) -> Result<PriceQuote, String> {
    let base = facts.base_price;
    if !base.is_finite() || base < 0.0 {
        return Err(format!("base price {base} is not a valid price"));
    }
    let (m, mut explanation) = multiplier(
        params,
        facts.utilization,
        facts.bookings_last_hour,
        facts.total_gpus,
        facts.previous_multiplier,
    );
    let multiplier = (m * 10_000.0).round() / 10_000.0;
    let price_per_hour = (base * multiplier * 10_000.0).round() / 10_000.0;
    explanation.push_str("; ");
    push_fixed(&mut explanation, price_per_hour, 4);
    explanation.push_str(" AITBC/h");
    Ok(PriceQuote {
        price_per_hour,
        multiplier,
        explanation,
    })
}

/// Lets go of a call's arguments once everything needed is copied out. In the module they are not
/// dropped one by one (about a fifth of a quote's fuel): the arena forgets them all at once.
fn release<T>(arguments: T) {
    #[cfg(target_arch = "wasm32")]
    {
        core::mem::forget(arguments);
        // SAFETY: the arguments were the only blocks on the heap (the module keeps nothing between
        // calls) and are forgotten; the answer is allocated after this.
        unsafe { arena::rewind() };
    }
    #[cfg(not(target_arch = "wasm32"))]
    drop(arguments);
}

struct PricingDemand;

impl Guest for PricingDemand {
    fn quote(config: Vec<(String, String)>, request: PricingRequest) -> Result<PriceQuote, String> {
        let params = Params::from_config(&config)?;
        let facts = Facts::of(&request);
        release((config, request));
        quote_facts(&params, &facts)
    }

    fn quote_batch(
        config: Vec<(String, String)>,
        requests: Vec<PricingRequest>,
    ) -> Vec<Result<PriceQuote, String>> {
        match Params::from_config(&config) {
            Ok(params) => requests.iter().map(|r| quote(&params, r)).collect(),
            Err(e) => requests.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}

export!(PricingDemand);
