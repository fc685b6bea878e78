//! The pricing-demand formula's behaviour, run on every module that implements it: the Rust
//! `policies/pricing-demand.wasm` always, and the JavaScript `plugins/js/pricing-demand` when
//! `GPU_MARKET_TEST_JS_PRICING` names its built component (`.ci/run` builds it and sets the variable; set
//! and missing fails). Each case checks the Rust module's answers against the formula and the
//! JavaScript module's answers against the Rust module's, field by field, explanation included.
//!
//! The modules run as simulation tenants (one reused instance each), under guardrails wide enough
//! never to move a price, so the answers are the modules' own.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use gpu_market::policy::wasm::{FailureKind, PricingTenant, TenantQuote};
use gpu_market::policy::{
    GpuFacts, MarketFacts, PriceState, PricingRequest, RequestFacts, TimeFacts,
};

const JS_ENV: &str = "GPU_MARKET_TEST_JS_PRICING";
const NOW: i64 = 1_767_225_600;

/// The shipped configuration's formula keys, with guardrails that never bind.
const POLICIES_TOML: &str = r#"
[pricing]
file = "module.wasm"
config = { min_multiplier = 0.8, max_multiplier = 2.5, utilization_threshold = 0.5, utilization_weight = 1.0, booking_rate_weight = 0.25, idle_discount = 0.1, smoothing = 0.5 }
guardrails = { multiplier_floor = 0.001, multiplier_cap = 1000.0, price_floor = 0.0, price_cap = 1e12, max_change_percent = 1e9, refresh_interval_secs = 300 }
"#;

fn load(path: PathBuf) -> PricingTenant {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let toml = dir.path().join("policies.toml");
    std::fs::write(&toml, POLICIES_TOML).expect("policies.toml written");
    PricingTenant::load(&path, Some(&toml))
        .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()))
}

/// The loaded modules, compiled once per test binary (the JavaScript one takes seconds).
fn loaded() -> &'static [(&'static str, Mutex<PricingTenant>)] {
    static MODULES: OnceLock<Vec<(&'static str, Mutex<PricingTenant>)>> = OnceLock::new();
    MODULES.get_or_init(|| {
        let rust = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/pricing-demand.wasm");
        let mut modules = vec![("rust", Mutex::new(load(rust)))];
        match std::env::var_os(JS_ENV).filter(|v| !v.is_empty()) {
            Some(js) => {
                let js = PathBuf::from(js);
                assert!(
                    js.is_file(),
                    "{JS_ENV} names {}, which does not exist: build it with plugins/js/build.sh",
                    js.display()
                );
                modules.push(("javascript", Mutex::new(load(js))));
            }
            None => println!(
                "{JS_ENV} is not set: the JavaScript module is not compared (plugins/js/build.sh builds it)"
            ),
        }
        modules
    })
}

/// Fresh tenants of every module, with `config` keys overriding the shipped ones.
fn modules(config: &[(&str, &str)]) -> Vec<(&'static str, PricingTenant)> {
    let config: Vec<(String, String)> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    loaded()
        .iter()
        .map(|(name, tenant)| {
            let tenant = tenant.lock().unwrap_or_else(|e| e.into_inner());
            let tenant = if config.is_empty() {
                tenant.fork()
            } else {
                // A configuration the module refuses fails its samples; such cases keep the module
                // and pass the keys in each call instead (see `refused_config`).
                tenant
                    .with_config(&config)
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
            };
            (*name, tenant)
        })
        .collect()
}

fn request(
    base_price: f64,
    utilization: f64,
    bookings_last_hour: u32,
    total_gpus: u32,
) -> PricingRequest {
    let booked = (utilization.clamp(0.0, 1.0) * f64::from(total_gpus)).round() as u32;
    PricingRequest {
        gpu: GpuFacts {
            gpu_id: "gpu_1".into(),
            model: "RTX 4090".into(),
            memory_gb: 24.0,
            region: Some("eu-west".into()),
            base_price,
        },
        market: MarketFacts {
            total_gpus,
            available_gpus: total_gpus.saturating_sub(booked),
            booked_gpus: booked,
            utilization,
            bookings_last_hour,
            recent_prices: vec![1.1, 1.2],
        },
        request: RequestFacts {
            duration_hours: 2.0,
            start_unix: NOW,
        },
        time: TimeFacts {
            now_unix: NOW,
            hour_of_day: 12,
            weekday: 2,
        },
        previous: None,
    }
}

/// The request of a GPU last quoted at `multiplier` (its price anchors the host's change guardrail,
/// which the test's guardrails never let bind).
fn with_previous(mut request: PricingRequest, multiplier: f64) -> PricingRequest {
    let price = request.gpu.base_price;
    request.previous = Some(PriceState {
        anchor_price: price,
        anchor_unix: NOW - 60,
        last_price: price,
        last_multiplier: multiplier,
    });
    request
}

/// What a module answered, without the decision's source (which names the module).
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    price_per_hour: f64,
    multiplier: f64,
    explanation: String,
    failure: Option<FailureKind>,
}

impl From<TenantQuote> for Answer {
    fn from(quote: TenantQuote) -> Self {
        Self {
            price_per_hour: quote.output.price_per_hour,
            multiplier: quote.output.multiplier,
            explanation: quote.output.explanation,
            failure: quote.failure,
        }
    }
}

/// Quotes `requests` one by one on every module; returns the Rust answers after checking that every
/// other module answered exactly the same.
fn quote_everywhere(config: &[(&str, &str)], requests: &[PricingRequest]) -> Vec<Answer> {
    let answers: Vec<(&str, Vec<Answer>)> = modules(config)
        .into_iter()
        .map(|(name, mut tenant)| {
            let answers = requests.iter().map(|r| tenant.quote(r).into()).collect();
            (name, answers)
        })
        .collect();
    same_as_rust(answers)
}

fn same_as_rust(answers: Vec<(&str, Vec<Answer>)>) -> Vec<Answer> {
    let (_, rust) = &answers[0];
    for (name, other) in &answers[1..] {
        assert_eq!(
            other, rust,
            "{name} answers differently from the Rust module"
        );
    }
    rust.clone()
}

fn ok(answer: &Answer) -> &Answer {
    assert_eq!(answer.failure, None, "the module failed: {answer:?}");
    answer
}

#[test]
fn a_busy_model_costs_more_with_utilization_and_booking_rate() {
    let [busy] = &quote_everywhere(&[], &[request(1.2, 0.9, 6, 10)])[..] else {
        unreachable!()
    };
    let busy = ok(busy);
    assert_eq!(busy.multiplier, 1.95);
    assert_eq!(busy.price_per_hour, 2.34);
    assert_eq!(
        busy.explanation,
        "90% of this model is booked and 6 booking(s) started in the last hour: demand ×1.95; 2.3400 AITBC/h"
    );
}

#[test]
fn an_idle_model_gets_the_idle_discount() {
    let [idle] = &quote_everywhere(&[], &[request(2.5, 0.0, 0, 4)])[..] else {
        unreachable!()
    };
    let idle = ok(idle);
    assert_eq!((idle.multiplier, idle.price_per_hour), (0.9, 2.25));
    assert_eq!(
        idle.explanation,
        "no GPU of this model is booked and none was booked in the last hour: idle discount ×0.90; 2.2500 AITBC/h"
    );
}

#[test]
fn utilization_counts_only_above_the_threshold() {
    let answers = quote_everywhere(
        &[],
        &[
            request(2.0, 0.3, 2, 4),
            request(2.0, 0.5, 2, 4),
            request(2.0, 0.75, 2, 4),
            request(2.0, 1.0, 2, 4),
            // Out-of-range and non-finite utilizations are clamped or read as none.
            request(2.0, 7.0, 2, 4),
            request(2.0, f64::NAN, 2, 4),
        ],
    );
    let multipliers: Vec<f64> = answers.iter().map(|a| ok(a).multiplier).collect();
    // 1 + 1.0 × above + 0.25 × (2 / 4).
    assert_eq!(multipliers, [1.125, 1.125, 1.625, 2.125, 2.125, 1.125]);
    // 1.125 is a tie at two decimals: written as Rust rounds it (half to even), not as `toFixed`.
    assert!(
        answers[0].explanation.contains("demand ×1.12;"),
        "{}",
        answers[0].explanation
    );
}

#[test]
fn the_booking_rate_is_per_gpu_and_capped() {
    let answers = quote_everywhere(
        &[],
        &[
            request(1.0, 0.5, 1, 4),
            request(1.0, 0.5, 8, 4),
            request(1.0, 0.5, 100, 4),
            // No GPU counted: the rate is per one GPU.
            request(1.0, 0.5, 1, 0),
        ],
    );
    let multipliers: Vec<f64> = answers.iter().map(|a| ok(a).multiplier).collect();
    assert_eq!(multipliers, [1.0625, 1.5, 1.5, 1.25]);
}

#[test]
fn the_multiplier_stays_within_the_configured_bounds() {
    let answers = quote_everywhere(
        &[("max_multiplier", "1.8"), ("idle_discount", "0.5")],
        &[request(1.0, 1.0, 40, 10), request(1.0, 0.0, 0, 10)],
    );
    let (capped, floored) = (ok(&answers[0]), ok(&answers[1]));
    assert_eq!(capped.multiplier, 1.8);
    assert!(
        capped.explanation.contains(", capped at ×1.80;"),
        "{}",
        capped.explanation
    );
    assert_eq!(floored.multiplier, 0.8);
    assert!(
        floored.explanation.contains(", floored at ×0.80;"),
        "{}",
        floored.explanation
    );
}

#[test]
fn the_multiplier_moves_gradually_from_the_previous_quote() {
    let busy = request(1.2, 0.9, 6, 10);
    let answers = quote_everywhere(
        &[],
        &[
            with_previous(busy.clone(), 1.0),
            // Within half a cent of the target: no mention.
            with_previous(busy.clone(), 1.95),
            // Not a usable multiplier: ignored.
            with_previous(busy, -2.0),
        ],
    );
    let gradual = ok(&answers[0]);
    assert_eq!(gradual.multiplier, 1.475);
    assert!(
        gradual
            .explanation
            .contains(", moving gradually from ×1.00;"),
        "{}",
        gradual.explanation
    );
    assert_eq!(ok(&answers[1]).multiplier, 1.95);
    assert!(!answers[1].explanation.contains("gradually"));
    assert_eq!(ok(&answers[2]).multiplier, 1.95);

    let followed = quote_everywhere(
        &[("smoothing", "1")],
        &[with_previous(request(1.2, 0.9, 6, 10), 1.0)],
    );
    assert_eq!(ok(&followed[0]).multiplier, 1.95);
}

#[test]
fn configuration_changes_change_the_answer() {
    let busy = [request(1.2, 0.9, 6, 10)];
    let heavier = quote_everywhere(
        &[("utilization_weight", "2"), ("booking_rate_weight", "0")],
        &busy,
    );
    assert_eq!(ok(&heavier[0]).multiplier, 2.5, "capped at max_multiplier");
    let threshold = quote_everywhere(&[("utilization_threshold", "0.8")], &busy);
    // Sums like 1 + 0.5 + 0.15 land a bit off the decimal in binary: compared at four decimals.
    assert_eq!((ok(&threshold[0]).multiplier * 1e4).round(), 16_500.0);
    let cap = quote_everywhere(
        &[("booking_rate_cap", " 0.2 "), ("max_multiplier", "3")],
        &busy,
    );
    assert_eq!((ok(&cap[0]).multiplier * 1e4).round(), 18_500.0);
}

#[test]
fn refused_configuration_and_invalid_prices_fail_the_same_way() {
    // A configuration the module refuses cannot pass the samples of a reload, so it is passed to
    // the module's own calls here: each module must refuse it, with the same message.
    let refused: [&[(&str, &str)]; 4] = [
        &[("max_multiplier", "lots")],
        &[("min_multiplier", "3")],
        &[("utilization_threshold", "1")],
        &[("smoothing", "0x1")],
    ];
    for config in refused {
        let config: Vec<(String, String)> = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let messages: Vec<(&str, Vec<String>)> = loaded()
            .iter()
            .map(|(name, tenant)| {
                let tenant = tenant.lock().unwrap_or_else(|e| e.into_inner());
                let error = tenant
                    .with_config(&config)
                    .err()
                    .unwrap_or_else(|| panic!("{name} accepted {config:?}"));
                (*name, vec![error.to_string().replace(tenant.policy(), "")])
            })
            .collect();
        let (_, rust) = &messages[0];
        for (name, other) in &messages[1..] {
            assert_eq!(other, rust, "{name} refuses {config:?} differently");
        }
    }
    let invalid = quote_everywhere(
        &[],
        &[
            request(-1.0, 0.9, 6, 10),
            request(f64::INFINITY, 0.9, 6, 10),
        ],
    );
    for answer in &invalid {
        assert!(
            answer.failure.is_some(),
            "an invalid base price was priced: {answer:?}"
        );
    }
}

#[test]
fn a_batch_answers_each_request_in_order_as_single_quotes_do() {
    let requests: Vec<PricingRequest> = (0..24)
        .map(|i| {
            let r = request(
                1.0 + f64::from(i) * 0.37,
                f64::from(i % 11) / 10.0,
                i % 7,
                1 + i % 5,
            );
            if i % 3 == 0 { with_previous(r, 1.2) } else { r }
        })
        .collect();
    let singles = quote_everywhere(&[], &requests);
    let batches: Vec<(&str, Vec<Answer>)> = modules(&[])
        .into_iter()
        .map(|(name, mut tenant)| {
            let answers = tenant
                .quote_batch(&requests)
                .into_iter()
                .map(Answer::from)
                .collect();
            (name, answers)
        })
        .collect();
    assert_eq!(same_as_rust(batches), singles);
}

/// Not an assertion on cost: prints each module's fuel per quote (a reused instance) for the
/// measurements in the report.
#[test]
fn fuel_per_quote_is_reported() {
    for (name, mut tenant) in modules(&[]) {
        let quote = tenant.quote(&request(1.2, 0.9, 6, 10));
        assert_eq!(quote.failure, None);
        println!("{name}: {} fuel per quote", quote.fuel);
    }
}
