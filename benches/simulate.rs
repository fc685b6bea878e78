//! The backtesting lab's speed.
//!
//! - `decisions`: pricing decisions per second on one core through the WebAssembly runtime (a policy
//!   tenant reusing its instance, the default `pricing-demand` module) beside the same formula as
//!   native Rust, one quote at a time and in `quote-batch` calls of 8.
//! - after criterion: a 30-day, 100-GPU, 20-requests/hour backtest of three policies (builtin,
//!   pricing-demand, pricing-scarcity) with the oracle, the simulation's own decisions/s per policy,
//!   and the speed-up of `--seeds 8` over `--seeds 1` on this machine's cores.
//!
//! `cargo bench --bench simulate` (criterion's filters apply to the first part only).

use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use gpu_market::domain::Money;
use gpu_market::policy::wasm::PricingTenant;
use gpu_market::policy::{
    DecisionSource, GpuFacts, MarketFacts, PriceQuote, PricingRequest, RequestFacts, TimeFacts,
};
use gpu_market::sim::Progress;
use gpu_market::sim::engine::MarketSettings;
use gpu_market::sim::generate::{DemandSpec, generate_trace};
use gpu_market::sim::inputs::Fleet;
use gpu_market::sim::lab::{Row, Study};
use gpu_market::sim::strategy::{Builtin, Priced, PricingFactory, PricingStrategy};
use gpu_market::sim::wasm::PricingModule;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn request(i: usize) -> PricingRequest {
    let booked = (i % 11) as u32;
    PricingRequest {
        gpu: GpuFacts {
            gpu_id: format!("gpu-{:04}", i % 100),
            model: "RTX 4090".into(),
            memory_gb: 24.0,
            region: Some("eu-west".into()),
            base_price: 1.2,
        },
        market: MarketFacts {
            total_gpus: 10,
            available_gpus: 10 - booked.min(10),
            booked_gpus: booked.min(10),
            utilization: f64::from(booked.min(10)) / 10.0,
            bookings_last_hour: (i % 7) as u32,
            recent_prices: vec![1.2; 12],
        },
        request: RequestFacts {
            duration_hours: 2.0,
            start_unix: 1_767_571_200 + i as i64 * 60,
        },
        time: TimeFacts {
            now_unix: 1_767_571_200 + i as i64 * 60,
            hour_of_day: ((i / 60) % 24) as u8,
            weekday: 0,
        },
        previous: None,
    }
}

/// `pricing-demand`'s formula with the config of `policies/policies.toml`, natively, remembering each
/// GPU's last multiplier for the smoothing as the host does: the baseline for the WASM figures.
#[derive(Default)]
struct NativeDemand {
    previous: HashMap<String, f64>,
}

impl PricingStrategy for NativeDemand {
    fn quote(&mut self, request: &PricingRequest) -> Priced {
        let (min, max, threshold, util_w, rate_w, rate_cap, idle, smoothing) =
            (0.8, 2.5, 0.5, 1.0, 0.25, 2.0, 0.1, 0.5);
        let m = &request.market;
        let u = m.utilization.clamp(0.0, 1.0);
        let (target, mut reason) = if u == 0.0 && m.bookings_last_hour == 0 {
            (1.0 - idle, format!("idle discount ×{:.2}", 1.0 - idle))
        } else {
            let above = (u - threshold).max(0.0) / (1.0 - threshold);
            let rate =
                (f64::from(m.bookings_last_hour) / f64::from(m.total_gpus.max(1))).min(rate_cap);
            let t = 1.0 + util_w * above + rate_w * rate;
            (t, format!("{:.0}% booked: demand ×{t:.2}", u * 100.0))
        };
        let mut x = match self.previous.get(&request.gpu.gpu_id) {
            Some(prev) => prev + smoothing * (target - prev),
            None => target,
        };
        if x > max {
            x = max;
            reason.push_str(", capped");
        } else if x < min {
            x = min;
            reason.push_str(", floored");
        }
        let multiplier = (x * 10_000.0).round() / 10_000.0;
        let price = (request.gpu.base_price * multiplier * 10_000.0).round() / 10_000.0;
        self.previous.insert(request.gpu.gpu_id.clone(), multiplier);
        Priced {
            quote: PriceQuote {
                price_per_hour: price,
                multiplier,
                explanation: format!("{reason}; {price:.4} AITBC/h"),
                source: DecisionSource::builtin(),
                state: None,
            },
            fuel: 0,
        }
    }
}

impl PricingFactory for NativeDemand {
    fn build(&self) -> Result<Box<dyn PricingStrategy>, String> {
        Ok(Box::new(NativeDemand::default()))
    }
}

fn tenant() -> PricingTenant {
    PricingTenant::load(
        &repo("policies/pricing-demand.wasm"),
        Some(&repo("policies")),
    )
    .expect("the default pricing policy loads")
}

fn decisions(c: &mut Criterion) {
    let requests: Vec<PricingRequest> = (0..1_024).map(request).collect();
    let mut group = c.benchmark_group("decisions");
    group.throughput(Throughput::Elements(1));
    let mut t = tenant();
    let mut i = 0;
    group.bench_function("wasm tenant, one quote", |b| {
        b.iter(|| {
            i = (i + 1) % requests.len();
            black_box(t.quote(&requests[i]))
        })
    });
    let mut native = NativeDemand::default();
    group.bench_function("native formula, one quote", |b| {
        b.iter(|| {
            i = (i + 1) % requests.len();
            black_box(native.quote(&requests[i]))
        })
    });
    group.throughput(Throughput::Elements(8));
    group.bench_function("wasm tenant, quote-batch of 8", |b| {
        b.iter_batched(
            || {
                i = (i + 8) % (requests.len() - 8);
                &requests[i..i + 8]
            },
            |chunk| black_box(t.quote_batch(chunk)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = decisions
}

fn fleet_100() -> Fleet {
    let m = |units: f64| Money::from_units(units).unwrap_or(Money::ZERO);
    Fleet::from_rows(&[
        ("RTX 4090".into(), 24.0, Some("eu-west".into()), m(1.2), 40),
        ("A100".into(), 80.0, Some("us-east".into()), m(2.5), 30),
        ("L4".into(), 24.0, None, m(0.6), 20),
        ("H100".into(), 80.0, Some("eu-west".into()), m(4.0), 10),
    ])
}

fn row(name: &str, factory: Arc<dyn PricingFactory>) -> Row {
    Row {
        name: name.into(),
        policy: name.into(),
        sha256: None,
        settings: Vec::new(),
        stateful: false,
        factory,
    }
}

fn wasm_row(file: &str) -> Row {
    let config = repo("policies/policies.toml");
    let module = PricingModule::load(&repo(file), Some(&config)).expect("module loads");
    row(file, module.with_settings(&[]).expect("default settings"))
}

fn study(fleet: &Arc<Fleet>, hours: f64, seeds: u64, rows: Vec<Row>, oracle: bool) -> Study {
    let spec = DemandSpec { hours, rate: 20.0 };
    Study {
        fleet: fleet.clone(),
        traces: (0..seeds)
            .map(|i| Arc::new(generate_trace(fleet, spec, 1, i).expect("trace")))
            .collect(),
        settings: MarketSettings {
            start_unix: 1_767_571_200,
            horizon_hours: hours as u32,
            history_interval_secs: 300,
            max_extensions: 3,
        },
        rows,
        timeout: Arc::new(Builtin),
        oracle,
        threads: None,
    }
}

fn three_policies() -> Vec<Row> {
    vec![
        row("builtin", Arc::new(Builtin)),
        wasm_row("policies/pricing-demand.wasm"),
        wasm_row("policies/pricing-scarcity.wasm"),
    ]
}

fn backtests() {
    let fleet = Arc::new(fleet_100());
    let quiet = Progress::hidden();

    // 30 days, 100 GPUs, 20 requests/hour, three policies and the oracle: the README's figure.
    let month = study(&fleet, 720.0, 1, three_policies(), true);
    let started = Instant::now();
    let outcome = month.run(&quiet).expect("runs");
    let total = started.elapsed();
    let requests = month.traces[0].requests.len();
    println!(
        "\n30-day backtest: 100 GPUs, {requests} requests, 3 policies + oracle (51 runs): {:.2} s wall on {} thread(s)",
        total.as_secs_f64(),
        rayon::current_num_threads()
    );
    for (row, runs) in month.rows.iter().zip(&outcome.rows) {
        let calls: u64 = runs.runs.iter().map(|r| r.pricing_calls).sum();
        let seconds: f64 = runs.wall.iter().map(Duration::as_secs_f64).sum();
        println!(
            "  {:<32} {:>8} pricing decisions in {:.3} s: {:>10.0} decisions/s (engine included)",
            row.name,
            calls,
            seconds,
            calls as f64 / seconds.max(1e-9)
        );
    }

    // The same month with the native twin of pricing-demand, single-threaded, for the ratio.
    let native = Study {
        threads: Some(1),
        ..study(
            &fleet,
            720.0,
            1,
            vec![
                wasm_row("policies/pricing-demand.wasm"),
                row("native pricing-demand", Arc::new(NativeDemand::default())),
            ],
            false,
        )
    };
    let outcome = native.run(&quiet).expect("runs");
    let per_second: Vec<f64> = outcome
        .rows
        .iter()
        .map(|r| {
            let calls: u64 = r.runs.iter().map(|o| o.pricing_calls).sum();
            calls as f64
                / r.wall
                    .iter()
                    .map(Duration::as_secs_f64)
                    .sum::<f64>()
                    .max(1e-9)
        })
        .collect();
    println!(
        "  one core, whole simulation: wasm {:.0} vs native {:.0} decisions/s: native/wasm = {:.2}",
        per_second[0],
        per_second[1],
        per_second[1] / per_second[0].max(1e-9)
    );

    // --seeds 8 over --seeds 1: a week each, three policies and the oracle; and --seeds 8 on one
    // thread against all cores (the runs of a study are independent, so this is the parallel gain).
    let time = |seeds: u64, threads: Option<usize>| {
        let s = Study {
            threads,
            ..study(&fleet, 168.0, seeds, three_policies(), true)
        };
        let started = Instant::now();
        s.run(&quiet).expect("runs");
        started.elapsed().as_secs_f64()
    };
    let cores = rayon::current_num_threads();
    let one = time(1, None);
    let eight = time(8, None);
    let eight_serial = time(8, Some(1));
    println!(
        "--seeds 1: {one:.2} s, --seeds 8: {eight:.2} s on {cores} threads ({:.2}x one seed's time for 8x the runs: {:.2}x the runs per second); --seeds 8 on 1 thread: {eight_serial:.2} s, so {cores} threads run it {:.2}x faster",
        eight / one,
        8.0 * one / eight,
        eight_serial / eight
    );
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    backtests();
}
