//! Host guardrails on pricing, applied to whatever a valid module returns: bounds on the multiplier
//! and the price, and a maximum change per refresh interval relative to the GPU's last booked quote,
//! which the request carries in (the host itself remembers nothing between calls).
//!
//! They live outside the module so that an operator can trust a price range even while trying out a
//! new policy, and so that a policy oscillating between extremes cannot whipsaw customers.

use serde::{Deserialize, Serialize};

use crate::policy::PriceState;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Guardrails {
    pub multiplier_floor: f64,
    pub multiplier_cap: f64,
    /// AITBC per hour.
    pub price_floor: f64,
    /// AITBC per hour.
    pub price_cap: f64,
    /// Largest move of a GPU's price within one refresh interval, in percent of the price at the start
    /// of the interval.
    pub max_change_percent: f64,
    pub refresh_interval_secs: u64,
}

impl Default for Guardrails {
    fn default() -> Self {
        Self {
            multiplier_floor: 0.5,
            multiplier_cap: 3.0,
            price_floor: 0.0,
            price_cap: 1_000_000.0,
            max_change_percent: 50.0,
            refresh_interval_secs: 300,
        }
    }
}

impl Guardrails {
    pub fn validate(&self) -> Result<(), String> {
        let finite = [
            self.multiplier_floor,
            self.multiplier_cap,
            self.price_floor,
            self.price_cap,
            self.max_change_percent,
        ];
        if finite.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err("bounds must be finite and not negative".into());
        }
        if self.multiplier_floor <= 0.0 || self.multiplier_floor > self.multiplier_cap {
            return Err("need 0 < multiplier_floor <= multiplier_cap".into());
        }
        if self.price_floor > self.price_cap {
            return Err("need price_floor <= price_cap".into());
        }
        if self.max_change_percent == 0.0 || self.refresh_interval_secs == 0 {
            return Err("max_change_percent and refresh_interval_secs must be positive".into());
        }
        Ok(())
    }
}

/// A module's answer after the guardrails.
#[derive(Debug, Clone, PartialEq)]
pub struct Guarded {
    pub price_per_hour: f64,
    pub multiplier: f64,
    /// Which guardrails moved the price, for the explanation; empty when none did.
    pub adjustments: Vec<String>,
    /// What to remember for the GPU if this quote is booked.
    pub state: PriceState,
}

impl Guardrails {
    /// Applies the guardrails to a valid module answer, given what is remembered of the GPU's last
    /// booked quote. Pure: the caller decides whether the returned state is kept (the market keeps it
    /// when the quote is booked), so quoting never changes anything.
    ///
    /// Order matters: the change limit goes first, so that the absolute bounds (multiplier, then price)
    /// always hold, even when they were tightened right after a higher quote.
    pub fn apply(
        &self,
        previous: Option<&PriceState>,
        base_price: f64,
        now_unix: i64,
        price: f64,
        multiplier: f64,
    ) -> Guarded {
        let rails = self;
        let mut adjustments = Vec::new();
        let mut price = price;

        let (anchor_price, anchor_unix) = match previous {
            Some(s)
                if now_unix.saturating_sub(s.anchor_unix) < rails.refresh_interval_secs as i64 =>
            {
                (Some(s.anchor_price), s.anchor_unix)
            }
            Some(s) => (Some(s.last_price), now_unix),
            None => (None, now_unix),
        };
        if let Some(anchor) = anchor_price.filter(|a| *a > 0.0 && a.is_finite()) {
            let step = anchor * rails.max_change_percent / 100.0;
            let limited = price.clamp(anchor - step, anchor + step);
            if limited != price {
                adjustments.push(format!(
                    "change limited to {}% per {} s",
                    rails.max_change_percent, rails.refresh_interval_secs
                ));
                price = limited;
            }
        }

        // With a base price, the multiplier customers see is price / base; without one (a free GPU),
        // only the module's own multiplier exists.
        let implied = if base_price > 0.0 {
            price / base_price
        } else {
            multiplier
        };
        let bounded_multiplier = implied.clamp(rails.multiplier_floor, rails.multiplier_cap);
        if bounded_multiplier != implied {
            adjustments.push(format!("multiplier held to ×{bounded_multiplier:.2}"));
            if base_price > 0.0 {
                price = base_price * bounded_multiplier;
            }
        }
        let bounded = price.clamp(rails.price_floor, rails.price_cap);
        if bounded != price {
            adjustments.push(format!("price held to {bounded:.4}"));
            price = bounded;
        }

        let multiplier = if base_price > 0.0 {
            price / base_price
        } else {
            bounded_multiplier
        };
        Guarded {
            price_per_hour: price,
            multiplier,
            adjustments,
            state: PriceState {
                anchor_price: anchor_price.unwrap_or(price),
                anchor_unix,
                last_price: price,
                last_multiplier: multiplier,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rails() -> Guardrails {
        Guardrails {
            max_change_percent: 20.0,
            refresh_interval_secs: 60,
            ..Guardrails::default()
        }
    }

    #[test]
    fn multiplier_and_price_are_bounded() {
        let g = rails().apply(None, 1.0, 0, 10.0, 10.0);
        assert_eq!(g.multiplier, 3.0);
        assert_eq!(g.price_per_hour, 3.0);
        let capped = Guardrails {
            price_cap: 2.0,
            ..rails()
        };
        let g = capped.apply(None, 1.0, 0, 2.5, 2.5);
        assert_eq!(g.price_per_hour, 2.0);
    }

    #[test]
    fn change_is_limited_within_an_interval_and_released_after() {
        let first = rails().apply(None, 1.0, 0, 1.0, 1.0).state;
        let g = rails().apply(Some(&first), 1.0, 30, 2.0, 2.0);
        assert!((g.price_per_hour - 1.2).abs() < 1e-9, "{g:?}");
        // Still inside the first interval: the anchor is 1.0, so 1.2 is the ceiling.
        let g = rails().apply(Some(&g.state), 1.0, 59, 2.0, 2.0);
        assert!((g.price_per_hour - 1.2).abs() < 1e-9);
        // A new interval anchors on the last quote.
        let g = rails().apply(Some(&g.state), 1.0, 60, 2.0, 2.0);
        assert!((g.price_per_hour - 1.44).abs() < 1e-9);
        assert_eq!(g.state.last_multiplier, g.multiplier);
        assert_eq!((g.state.anchor_price, g.state.anchor_unix), (1.2, 60));
    }

    #[test]
    fn bounds_win_over_the_change_limit() {
        let first = rails().apply(None, 1.0, 0, 2.5, 2.5).state;
        let tightened = Guardrails {
            multiplier_cap: 1.1,
            ..rails()
        };
        let g = tightened.apply(Some(&first), 1.0, 1, 2.5, 2.5);
        assert!((g.multiplier - 1.1).abs() < 1e-9, "{g:?}");
    }
}
