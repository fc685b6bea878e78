//! `pricing-scarcity`: an example pricing policy that prices the last free GPUs of a model higher.
//!
//! multiplier = floor + (cap - floor) × utilization^curve, plus `last_units_premium` when at most
//! `last_units` GPUs of the model are still free, held within [floor, cap]. Unlike `pricing-demand` it
//! ignores the booking rate and does not smooth: the price follows the free capacity at once.
//!
//! Configuration keys (all optional, numbers as strings): `floor` (0.9), `cap` (2.0), `curve` (2.0),
//! `last_units` (1), `last_units_premium` (0.25).

wit_bindgen::generate!({ path: "../wit", world: "pricing-policy" });

use exports::gpu_market::policy::pricing::{Guest, PriceQuote, PricingRequest};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub floor: f64,
    pub cap: f64,
    pub curve: f64,
    pub last_units: f64,
    pub last_units_premium: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            floor: 0.9,
            cap: 2.0,
            curve: 2.0,
            last_units: 1.0,
            last_units_premium: 0.25,
        }
    }
}

impl Params {
    pub fn from_config(config: &[(String, String)]) -> Result<Self, String> {
        let mut params = Self::default();
        for (key, value) in config {
            let slot = match key.as_str() {
                "floor" => &mut params.floor,
                "cap" => &mut params.cap,
                "curve" => &mut params.curve,
                "last_units" => &mut params.last_units,
                "last_units_premium" => &mut params.last_units_premium,
                _ => continue,
            };
            *slot = value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("config {key}: {value:?} is not a number"))?;
        }
        if params.floor <= 0.0 || params.floor > params.cap {
            return Err("config: need 0 < floor <= cap".into());
        }
        if params.curve <= 0.0 {
            return Err("config: curve must be positive".into());
        }
        Ok(params)
    }
}

/// The multiplier for a model with `available` of `total` GPUs free at `utilization`, and why.
pub fn multiplier(params: &Params, utilization: f64, available: u32) -> (f64, String) {
    let utilization = if utilization.is_finite() {
        utilization.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let mut m = params.floor + (params.cap - params.floor) * utilization.powf(params.curve);
    let mut reason = format!("{:.0}% of this model is booked: ×{m:.2}", utilization * 100.0);
    if f64::from(available) <= params.last_units {
        m += params.last_units_premium;
        reason.push_str(&format!(
            ", {available} GPU(s) left: +{:.2}",
            params.last_units_premium
        ));
    }
    if m > params.cap {
        m = params.cap;
        reason.push_str(&format!(", capped at ×{m:.2}"));
    }
    (m.max(params.floor), reason)
}

pub fn quote(params: &Params, request: &PricingRequest) -> Result<PriceQuote, String> {
    let base = request.gpu.base_price;
    if !base.is_finite() || base < 0.0 {
        return Err(format!("base price {base} is not a valid price"));
    }
    let (m, reason) = multiplier(
        params,
        request.market.utilization,
        request.market.available_gpus,
    );
    let multiplier = (m * 10_000.0).round() / 10_000.0;
    let price_per_hour = (base * multiplier * 10_000.0).round() / 10_000.0;
    Ok(PriceQuote {
        price_per_hour,
        multiplier,
        explanation: format!("{reason}; {price_per_hour:.4} AITBC/h"),
    })
}

struct PricingScarcity;

impl Guest for PricingScarcity {
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

export!(PricingScarcity);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_is_the_floor_and_the_last_gpu_costs_more() {
        let p = Params::default();
        assert_eq!(multiplier(&p, 0.0, 4).0, 0.9);
        let (m, _) = multiplier(&p, 0.5, 2);
        assert!((m - (0.9 + 1.1 * 0.25)).abs() < 1e-12);
        let (m, _) = multiplier(&p, 0.75, 1);
        assert!((m - (0.9 + 1.1 * 0.5625 + 0.25)).abs() < 1e-12);
        assert_eq!(multiplier(&p, 1.0, 0).0, 2.0);
    }
}
