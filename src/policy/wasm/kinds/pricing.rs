//! The pricing slot: WIT bindings, conversions, the contract check, guardrails, the built-in rule
//! (the asking price) and the fallback (the asking price too, saying why).

use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, Func, InstancePre, TypedFunc};

use crate::domain::Outcome;
use crate::policy::{DecisionSource, PriceQuote, PricingRequest};

use super::super::call::{Failure, FailureKind};
use super::super::checks::{CONTRACT_PACKAGE, CONTRACT_VERSION};
use super::super::config::SlotSettings;
use super::super::limits::{CallState, Limits};
use super::super::slot::Slot;
use super::slot_kind::{SlotKind, typecheck_func};

mod bindings {
    wasmtime::component::bindgen!({
        path: "plugins/wit",
        world: "pricing-policy",
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

use bindings::exports::gpu_market::policy::pricing as wit;

type QuoteParams<'a> = (&'a [(String, String)], &'a wit::PricingRequest);
type QuoteResults = (Result<wit::PriceQuote, String>,);
type BatchParams<'a> = (&'a [(String, String)], &'a [wit::PricingRequest]);
type BatchResults = (Vec<Result<wit::PriceQuote, String>>,);

/// A pricing version ready to instantiate, with its two exports found once, at load. bindgen's own
/// `Pre` looks each export up and type-checks it again on every instantiation, about a tenth of the
/// host's work for a fresh-instance quote; here the types are checked once (`typecheck`, before the
/// version may serve) and each call takes the function as it is.
#[derive(Clone)]
pub struct PricingPre {
    instance_pre: InstancePre<CallState>,
    quote: ComponentExportIndex,
    quote_batch: ComponentExportIndex,
}

/// The pricing exports of one instance.
pub struct PricingFuncs {
    quote: Func,
    quote_batch: Func,
}

/// A multiplier above this is not a price, it is a bug; the guardrails then never see it.
const MAX_SANE_MULTIPLIER: f64 = 1000.0;

/// The pricing slot as a [`SlotKind`].
#[derive(Debug, Clone, Copy)]
pub struct PricingSlot;

impl SlotKind for PricingSlot {
    const SLOT: Slot = Slot::Pricing;
    type Input = PricingRequest;
    type Output = PriceQuote;
    type WitInput = wit::PricingRequest;
    type WitAnswer = wit::PriceQuote;
    type Answer = wit::PriceQuote;
    type Pre = PricingPre;
    type Bindings = PricingFuncs;
    // Nothing: the GPU's last booked quote comes in with each request (`previous`).
    type HostState = ();

    fn pre(instance_pre: InstancePre<CallState>) -> wasmtime::Result<Self::Pre> {
        // bindgen's `Pre` checks that the exports exist, as for the other slots.
        bindings::PricingPolicyPre::new(instance_pre.clone())?;
        let component = instance_pre.component();
        let interface = format!(
            "{CONTRACT_PACKAGE}/{}@{CONTRACT_VERSION}",
            Self::SLOT.interface()
        );
        let interface = component
            .get_export_index(None, &interface)
            .ok_or_else(|| wasmtime::format_err!("no exported instance `{interface}`"))?;
        let func = |name: &str| {
            component
                .get_export_index(Some(&interface), name)
                .ok_or_else(|| wasmtime::format_err!("no exported function `{name}`"))
        };
        Ok(PricingPre {
            quote: func("quote")?,
            quote_batch: func("quote-batch")?,
            instance_pre,
        })
    }

    fn typecheck(instance_pre: &InstancePre<CallState>, export: &str) -> wasmtime::Result<()> {
        typecheck_func::<QuoteParams<'static>, QuoteResults>(instance_pre, export, "quote")?;
        typecheck_func::<BatchParams<'static>, BatchResults>(instance_pre, export, "quote-batch")
    }

    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<PricingFuncs> {
        let instance = pre.instance_pre.instantiate(&mut *store)?;
        let func = |store: &mut Store<CallState>, index| {
            instance
                .get_func(store, index)
                .ok_or_else(|| wasmtime::format_err!("a pricing export vanished"))
        };
        Ok(PricingFuncs {
            quote: func(store, &pre.quote)?,
            quote_batch: func(store, &pre.quote_batch)?,
        })
    }

    fn to_wit(request: &PricingRequest, _: &()) -> wit::PricingRequest {
        let PricingRequest {
            gpu,
            market,
            request: asked,
            time,
            previous,
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
            previous_multiplier: previous.map(|p| p.last_multiplier),
        }
    }

    fn routing_key(request: &PricingRequest) -> String {
        request.gpu.gpu_id.clone()
    }

    fn gpu_id(request: &PricingRequest) -> &str {
        &request.gpu.gpu_id
    }

    fn outcome(quote: &PriceQuote) -> Outcome {
        Outcome::Price(quote.price_per_hour)
    }

    fn source(quote: &PriceQuote) -> &DecisionSource {
        &quote.source
    }

    fn source_mut(quote: &mut PriceQuote) -> &mut DecisionSource {
        &mut quote.source
    }

    fn input_size(request: &wit::PricingRequest) -> usize {
        let gpu = &request.gpu;
        64 + gpu.gpu_id.len()
            + gpu.model.len()
            + gpu.region.as_ref().map_or(0, String::len)
            + 8 * request.market.recent_prices.len()
    }

    fn call(
        funcs: &PricingFuncs,
        store: &mut Store<CallState>,
        config: &[(String, String)],
        input: &wit::PricingRequest,
    ) -> wasmtime::Result<Result<wit::PriceQuote, String>> {
        // SAFETY: `typecheck` checked this function's type against exactly these Rust types before
        // the version could serve (see `PricingPre`).
        let quote =
            unsafe { TypedFunc::<QuoteParams<'_>, QuoteResults>::new_unchecked(funcs.quote) };
        quote.call(store, (config, input)).map(|(answer,)| answer)
    }

    fn call_batch(
        funcs: &PricingFuncs,
        store: &mut Store<CallState>,
        config: &[(String, String)],
        inputs: &[wit::PricingRequest],
    ) -> wasmtime::Result<Vec<Result<wit::PriceQuote, String>>> {
        // SAFETY: as in `call`.
        let batch =
            unsafe { TypedFunc::<BatchParams<'_>, BatchResults>::new_unchecked(funcs.quote_batch) };
        batch
            .call(store, (config, inputs))
            .map(|(answers,)| answers)
    }

    /// A finite, non-negative price, a finite positive multiplier of sane size, and an explanation
    /// within the output limit.
    fn validate(quote: wit::PriceQuote, limits: &Limits) -> Result<wit::PriceQuote, Failure> {
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

    /// Applies the guardrails; the state they return goes out with the quote, for the market to keep
    /// if the quote is booked.
    fn finish(
        _: &(),
        settings: &SlotSettings,
        request: &PricingRequest,
        quote: wit::PriceQuote,
        source: DecisionSource,
    ) -> PriceQuote {
        let guarded = settings.guardrails.apply(
            request.previous.as_ref(),
            request.gpu.base_price,
            request.time.now_unix,
            quote.price_per_hour,
            quote.multiplier,
        );
        let mut explanation = quote.explanation;
        if !guarded.adjustments.is_empty() {
            explanation = format!(
                "{explanation} (host guardrails: {})",
                guarded.adjustments.join(", ")
            );
        }
        PriceQuote {
            price_per_hour: guarded.price_per_hour,
            multiplier: guarded.multiplier,
            explanation,
            source,
            state: Some(guarded.state),
        }
    }

    fn fallback(request: &PricingRequest, source: DecisionSource, failure: &Failure) -> PriceQuote {
        asking_price(
            request,
            format!(
                "asking price (pricing policy unavailable: {})",
                failure.kind
            ),
            source,
        )
    }

    fn builtin(request: &PricingRequest) -> PriceQuote {
        asking_price(
            request,
            "asking price (built-in policy)".to_owned(),
            DecisionSource::builtin(),
        )
    }

    fn default_sample() -> serde_json::Value {
        serde_json::json!({
            "gpu": { "gpu_id": "gpu_sample", "model": "RTX 4090", "memory_gb": 24.0, "region": "eu-west", "base_price": 1.0 },
            "market": { "total_gpus": 4, "available_gpus": 1, "booked_gpus": 3, "utilization": 0.75,
                        "bookings_last_hour": 2, "recent_prices": [0.9, 1.0, 1.1] },
            "request": { "duration_hours": 2.0, "start_unix": 1_767_225_600 },
            "time": { "now_unix": 1_767_225_600, "hour_of_day": 0, "weekday": 3 }
        })
    }

    fn variants(input: &wit::PricingRequest) -> Vec<wit::PricingRequest> {
        let with = |edit: &dyn Fn(&mut wit::PricingRequest)| {
            let mut variant = input.clone();
            edit(&mut variant);
            variant
        };
        vec![
            with(&|r| {
                r.market.utilization = 0.0;
                r.market.booked_gpus = 0;
                r.market.bookings_last_hour = 0;
            }),
            with(&|r| {
                r.market.utilization = 1.0;
                r.market.bookings_last_hour = r.market.bookings_last_hour.saturating_mul(3) + 5;
            }),
            with(&|r| r.previous_multiplier = Some(0.9)),
            with(&|r| r.previous_multiplier = Some(2.0)),
            with(&|r| {
                r.time.hour_of_day = (r.time.hour_of_day + 12) % 24;
                r.time.weekday = (r.time.weekday + 3) % 7;
            }),
            with(&|r| r.gpu.base_price *= 3.0),
        ]
    }
}

/// The one pricing rule the host knows: the miner's asking price, multiplier 1.
fn asking_price(
    request: &PricingRequest,
    explanation: String,
    source: DecisionSource,
) -> PriceQuote {
    PriceQuote {
        price_per_hour: request.gpu.base_price,
        multiplier: 1.0,
        explanation,
        source,
        state: None,
    }
}
