//! [`Policies`] for [`PolicyRuntime`]: take a snapshot of the slot, call its module on the blocking
//! pool, check the answer, apply the guardrails, or fall back.

use std::sync::Arc;

use async_trait::async_trait;

use crate::policy::{
    BuiltinPolicies, DecisionSource, ModerationDecision, ModerationRequest, Policies, PriceQuote,
    PricingRequest, TimeoutDecision, TimeoutRequest,
};

use super::Slot;
use super::call::{CallReport, Failure, FailureKind};
use super::config::SlotSettings;
use super::runtime::PolicyRuntime;
use super::slot::Active;
use super::slots::{moderation, pricing, timeout};

fn not_loaded() -> Failure {
    Failure::new(
        FailureKind::NotLoaded,
        "no version of the configured module passed its checks",
    )
}

fn wrong_slot<T>() -> CallReport<T> {
    CallReport {
        result: Err(Failure::new(
            FailureKind::Host,
            "module loaded into the wrong slot",
        )),
        cost: Default::default(),
    }
}

fn too_large(size: usize, settings: &SlotSettings) -> Option<Failure> {
    let max = settings.limits.max_input_bytes;
    (size > max).then(|| {
        Failure::new(
            FailureKind::InputTooLarge,
            format!("input is {size} bytes, the limit is {max}"),
        )
    })
}

impl PolicyRuntime {
    fn pricing_fallback(
        &self,
        active: &Active,
        request: &PricingRequest,
        failure: Failure,
    ) -> PriceQuote {
        self.fell_back(Slot::Pricing, active, &failure);
        pricing::fallback(request, &active.policy_label(), &failure)
    }

    /// Applies the guardrails to a checked answer and records it as the GPU's last quote.
    fn guarded(
        &self,
        settings: &SlotSettings,
        request: &PricingRequest,
        quote: pricing::wit::PriceQuote,
        policy: String,
    ) -> PriceQuote {
        let source = DecisionSource {
            policy,
            fallback: false,
        };
        pricing::guarded(&self.prices, settings, request, quote, source)
    }
}

#[async_trait]
impl Policies for PolicyRuntime {
    async fn quote(&self, request: PricingRequest) -> PriceQuote {
        let active = self.cell(Slot::Pricing).active.load_full();
        let Some(settings) = active.settings.clone() else {
            return BuiltinPolicies::quote_now(&request);
        };
        let Some(module) = active.module.clone() else {
            return self.pricing_fallback(&active, &request, not_loaded());
        };
        let input = pricing::to_wit(
            &request,
            self.prices.previous_multiplier(&request.gpu.gpu_id),
        );
        if let Some(failure) = too_large(pricing::input_size(&input), &settings) {
            return self.pricing_fallback(&active, &request, failure);
        }
        let answer = self
            .invoke(
                Slot::Pricing,
                &active,
                &module,
                1,
                move |module, settings| match module.pre.pricing() {
                    Some(pre) => pricing::call_one(pre, &settings.limits, &settings.config, &input),
                    None => wrong_slot(),
                },
            )
            .await
            .and_then(|answer| pricing::check(answer, &settings.limits));
        match answer {
            Ok(quote) => self.guarded(&settings, &request, quote, module.label()),
            Err(failure) => self.pricing_fallback(&active, &request, failure),
        }
    }

    async fn quote_batch(&self, requests: Vec<PricingRequest>) -> Vec<PriceQuote> {
        let active = self.cell(Slot::Pricing).active.load_full();
        let Some(settings) = active.settings.clone() else {
            return requests.iter().map(BuiltinPolicies::quote_now).collect();
        };
        let Some(module) = active.module.clone() else {
            return requests
                .iter()
                .map(|r| self.pricing_fallback(&active, r, not_loaded()))
                .collect();
        };
        let mut quotes: Vec<Option<PriceQuote>> = vec![None; requests.len()];
        // (index in `requests`, input) for every request small enough to send.
        let mut sendable = Vec::with_capacity(requests.len());
        for (i, request) in requests.iter().enumerate() {
            let input = pricing::to_wit(
                request,
                self.prices.previous_multiplier(&request.gpu.gpu_id),
            );
            match too_large(pricing::input_size(&input), &settings) {
                Some(failure) => quotes[i] = Some(self.pricing_fallback(&active, request, failure)),
                None => sendable.push((i, input)),
            }
        }
        for chunk in sendable.chunks(settings.limits.max_batch) {
            let (indices, inputs): (Vec<usize>, Vec<_>) = chunk.iter().cloned().unzip();
            let answers = self
                .invoke(
                    Slot::Pricing,
                    &active,
                    &module,
                    inputs.len() as u64,
                    move |module, settings| match module.pre.pricing() {
                        Some(pre) => {
                            pricing::call_batch(pre, &settings.limits, &settings.config, &inputs)
                        }
                        None => wrong_slot(),
                    },
                )
                .await;
            match answers {
                Ok(answers) => {
                    for (i, answer) in indices.into_iter().zip(answers) {
                        let request = &requests[i];
                        quotes[i] = Some(match pricing::check(answer, &settings.limits) {
                            Ok(quote) => self.guarded(&settings, request, quote, module.label()),
                            Err(failure) => self.pricing_fallback(&active, request, failure),
                        });
                    }
                }
                Err(failure) => {
                    for i in indices {
                        quotes[i] =
                            Some(self.pricing_fallback(&active, &requests[i], failure.clone()));
                    }
                }
            }
        }
        quotes
            .into_iter()
            .zip(&requests)
            .map(|(q, r)| q.unwrap_or_else(|| BuiltinPolicies::quote_now(r)))
            .collect()
    }

    async fn booking_timeout(&self, request: TimeoutRequest) -> TimeoutDecision {
        let active = self.cell(Slot::BookingTimeout).active.load_full();
        let Some(settings) = active.settings.clone() else {
            return BuiltinPolicies::timeout_now(&request);
        };
        let fallback = |failure: Failure| {
            self.fell_back(Slot::BookingTimeout, &active, &failure);
            timeout::fallback(&request, &active.policy_label(), &failure)
        };
        let Some(module) = active.module.clone() else {
            return fallback(not_loaded());
        };
        let input = timeout::to_wit(&request);
        if let Some(failure) = too_large(timeout::input_size(&input), &settings) {
            return fallback(failure);
        }
        let answer = self
            .invoke(
                Slot::BookingTimeout,
                &active,
                &module,
                1,
                move |module, settings| match module.pre.timeout() {
                    Some(pre) => timeout::call_one(pre, &settings.limits, &settings.config, &input),
                    None => wrong_slot(),
                },
            )
            .await
            .and_then(|answer| timeout::check(answer, &settings.limits, &module.label()));
        answer.unwrap_or_else(fallback)
    }

    async fn moderate(&self, request: ModerationRequest) -> ModerationDecision {
        let active: Arc<Active> = self.cell(Slot::ReviewModeration).active.load_full();
        let Some(settings) = active.settings.clone() else {
            return BuiltinPolicies.moderate(request).await;
        };
        let fallback = |failure: Failure| {
            self.fell_back(Slot::ReviewModeration, &active, &failure);
            moderation::fallback(&active.policy_label(), &failure)
        };
        let Some(module) = active.module.clone() else {
            return fallback(not_loaded());
        };
        let input = moderation::to_wit(&request);
        if let Some(failure) = too_large(moderation::input_size(&input), &settings) {
            return fallback(failure);
        }
        let answer = self
            .invoke(
                Slot::ReviewModeration,
                &active,
                &module,
                1,
                move |module, settings| match module.pre.moderation() {
                    Some(pre) => {
                        moderation::call_one(pre, &settings.limits, &settings.config, &input)
                    }
                    None => wrong_slot(),
                },
            )
            .await
            .and_then(|answer| moderation::check(answer, &settings.limits, &module.label()));
        answer.unwrap_or_else(fallback)
    }
}
