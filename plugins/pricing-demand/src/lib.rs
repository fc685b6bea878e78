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

use exports::gpu_market::policy::pricing::{Guest, PriceQuote, PricingRequest};

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
            *slot = value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
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
        return (
            m,
            format!(
                "no GPU of this model is booked and none was booked in the last hour: idle discount ×{m:.2}"
            ),
        );
    }
    let above = (utilization - params.utilization_threshold).max(0.0)
        / (1.0 - params.utilization_threshold);
    let rate =
        (f64::from(bookings_last_hour) / f64::from(total_gpus.max(1))).min(params.booking_rate_cap);
    let m = 1.0 + params.utilization_weight * above + params.booking_rate_weight * rate;
    let reason = format!(
        "{:.0}% of this model is booked and {bookings_last_hour} booking(s) started in the last hour: demand ×{m:.2}",
        utilization * 100.0
    );
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
                reason.push_str(&format!(", moving gradually from ×{prev:.2}"));
            }
            smoothed
        }
        None => target,
    };
    if m > params.max_multiplier {
        m = params.max_multiplier;
        reason.push_str(&format!(", capped at ×{m:.2}"));
    } else if m < params.min_multiplier {
        m = params.min_multiplier;
        reason.push_str(&format!(", floored at ×{m:.2}"));
    }
    (m, reason)
}

pub fn quote(params: &Params, request: &PricingRequest) -> Result<PriceQuote, String> {
    let base = request.gpu.base_price;
    if !base.is_finite() || base < 0.0 {
        return Err(format!("base price {base} is not a valid price"));
    }
    let market = &request.market;
    let (m, reason) = multiplier(
        params,
        market.utilization,
        market.bookings_last_hour,
        market.total_gpus,
        request.previous_multiplier,
    );
    let multiplier = (m * 10_000.0).round() / 10_000.0;
    let price_per_hour = (base * multiplier * 10_000.0).round() / 10_000.0;
    Ok(PriceQuote {
        price_per_hour,
        multiplier,
        explanation: format!("{reason}; {price_per_hour:.4} AITBC/h"),
    })
}

struct PricingDemand;

impl Guest for PricingDemand {
    fn quote(config: Vec<(String, String)>, request: PricingRequest) -> Result<PriceQuote, String> {
        quote(&Params::from_config(&config)?, &request)
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
