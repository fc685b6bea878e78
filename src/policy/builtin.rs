//! The built-in rules: what the marketplace does when no WebAssembly policy is configured for a slot.

use async_trait::async_trait;

use super::wasm::{ModerationSlot, PricingSlot, SlotKind, TimeoutSlot};
use super::{
    ModerationDecision, ModerationRequest, Policies, PriceQuote, PricingRequest, TimeoutDecision,
    TimeoutRequest,
};

/// Pricing = the miner's asking price, timeout = expire at the booked end, moderation = accept. Each
/// rule is written once, in its slot kind ([`SlotKind::builtin`]); the WebAssembly runtime answers
/// with the same rules for a slot that has no module.
#[derive(Debug, Default, Clone, Copy)]
pub struct BuiltinPolicies;

impl BuiltinPolicies {
    pub fn quote_now(request: &PricingRequest) -> PriceQuote {
        PricingSlot::builtin(request)
    }

    pub fn timeout_now(request: &TimeoutRequest) -> TimeoutDecision {
        TimeoutSlot::builtin(request)
    }

    pub fn moderate_now(request: &ModerationRequest) -> ModerationDecision {
        ModerationSlot::builtin(request)
    }
}

#[async_trait]
impl Policies for BuiltinPolicies {
    async fn quote(&self, request: PricingRequest) -> PriceQuote {
        Self::quote_now(&request)
    }

    async fn quote_batch(&self, requests: Vec<PricingRequest>) -> Vec<PriceQuote> {
        requests.iter().map(Self::quote_now).collect()
    }

    async fn booking_timeout(&self, request: TimeoutRequest) -> TimeoutDecision {
        Self::timeout_now(&request)
    }

    async fn moderate(&self, request: ModerationRequest) -> ModerationDecision {
        Self::moderate_now(&request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{GpuFacts, MarketFacts, RequestFacts, TimeFacts, TimeoutAction};

    fn pricing_request(base_price: f64) -> PricingRequest {
        PricingRequest {
            gpu: GpuFacts {
                gpu_id: "gpu_x".into(),
                model: "RTX 4090".into(),
                memory_gb: 24.0,
                region: None,
                base_price,
            },
            market: MarketFacts {
                total_gpus: 1,
                available_gpus: 1,
                booked_gpus: 0,
                utilization: 0.0,
                bookings_last_hour: 0,
                recent_prices: vec![],
            },
            request: RequestFacts {
                duration_hours: 1.0,
                start_unix: 0,
            },
            time: TimeFacts {
                now_unix: 0,
                hour_of_day: 0,
                weekday: 3,
            },
            previous: None,
        }
    }

    #[tokio::test]
    async fn builtin_quote_is_the_asking_price() {
        let quote = BuiltinPolicies.quote(pricing_request(0.75)).await;
        assert_eq!(quote.price_per_hour, 0.75);
        assert_eq!(quote.multiplier, 1.0);
        assert!(!quote.source.fallback);
    }

    #[tokio::test]
    async fn builtin_timeout_expires_only_at_the_end() {
        let mut request = TimeoutRequest {
            booking_id: "bk_x".into(),
            gpu_id: "gpu_x".into(),
            start_unix: 100,
            end_unix: 200,
            now_unix: 199,
            last_heartbeat_unix: None,
            job_id: None,
            extensions: 0,
        };
        assert_eq!(
            BuiltinPolicies
                .booking_timeout(request.clone())
                .await
                .action,
            TimeoutAction::Keep
        );
        request.now_unix = 200;
        assert_eq!(
            BuiltinPolicies.booking_timeout(request).await.action,
            TimeoutAction::Expire
        );
    }
}
