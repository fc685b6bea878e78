//! What the engine needs from a pricing or booking-timeout policy, and the native ones: `builtin` and
//! the oracle's constant multipliers. WebAssembly policies plug in through [`super::wasm`].
//!
//! A strategy lives for one simulated run (one tenant: its state, such as the guardrails' memory of
//! earlier quotes, starts fresh with every run); a factory makes one per run.

use crate::policy::{BuiltinPolicies, DecisionSource, PriceQuote, PricingRequest};
use crate::policy::{TimeoutDecision, TimeoutRequest};

use crate::domain::Money;

/// One pricing answer and what it cost the sandbox (0 for native code).
#[derive(Debug, Clone, PartialEq)]
pub struct Priced {
    pub quote: PriceQuote,
    pub fuel: u64,
}

pub trait PricingStrategy: Send {
    fn quote(&mut self, request: &PricingRequest) -> Priced;

    /// Quotes several GPUs at one moment, in order (one guest call where the strategy can).
    fn quote_all(&mut self, requests: &[PricingRequest], out: &mut Vec<Priced>) {
        out.extend(requests.iter().map(|r| self.quote(r)));
    }

    /// `Some(m)` when every quote is the asking price × m whatever the market does: then the cheapest
    /// quote is the cheapest asking price's, and the engine asks only for that one.
    fn constant_multiplier(&self) -> Option<f64> {
        None
    }
}

/// One booking-timeout answer and its fuel.
pub trait TimeoutStrategy: Send {
    fn decide(&mut self, request: &TimeoutRequest) -> (TimeoutDecision, u64);
}

/// Makes a fresh strategy for each run.
pub trait PricingFactory: Send + Sync {
    fn build(&self) -> Result<Box<dyn PricingStrategy>, String>;
}

pub trait TimeoutFactory: Send + Sync {
    fn build(&self) -> Result<Box<dyn TimeoutStrategy>, String>;
}

/// The server's built-in pricing: the asking price, multiplier 1.
#[derive(Debug, Default, Clone, Copy)]
pub struct Builtin;

impl PricingStrategy for Builtin {
    fn quote(&mut self, request: &PricingRequest) -> Priced {
        Priced {
            quote: BuiltinPolicies::quote_now(request),
            fuel: 0,
        }
    }

    fn constant_multiplier(&self) -> Option<f64> {
        Some(1.0)
    }
}

impl PricingFactory for Builtin {
    fn build(&self) -> Result<Box<dyn PricingStrategy>, String> {
        Ok(Box::new(Builtin))
    }
}

/// The server's built-in booking timeout: expire at the booked end.
impl TimeoutStrategy for Builtin {
    fn decide(&mut self, request: &TimeoutRequest) -> (TimeoutDecision, u64) {
        (BuiltinPolicies::timeout_now(request), 0)
    }
}

impl TimeoutFactory for Builtin {
    fn build(&self) -> Result<Box<dyn TimeoutStrategy>, String> {
        Ok(Box::new(Builtin))
    }
}

/// The asking price × a constant multiplier given in hundredths (the oracle's candidates), computed
/// in exact micro-units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Constant {
    pub percent: i64,
}

impl Constant {
    pub fn multiplier(self) -> f64 {
        self.percent as f64 / 100.0
    }
}

impl PricingStrategy for Constant {
    fn quote(&mut self, request: &PricingRequest) -> Priced {
        let asking = Money::from_units(request.gpu.base_price).unwrap_or(Money::ZERO);
        let price = asking.pro_rata(self.percent, 100);
        Priced {
            quote: PriceQuote {
                price_per_hour: price.as_units(),
                multiplier: self.multiplier(),
                explanation: format!("constant ×{:.2}", self.multiplier()),
                source: DecisionSource::new(format!("constant×{:.2}", self.multiplier()), false),
                state: None,
            },
            fuel: 0,
        }
    }

    fn constant_multiplier(&self) -> Option<f64> {
        Some(self.multiplier())
    }
}

impl PricingFactory for Constant {
    fn build(&self) -> Result<Box<dyn PricingStrategy>, String> {
        Ok(Box::new(*self))
    }
}
