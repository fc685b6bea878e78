//! Quote latency through the WebAssembly pricing policy (fresh instance per call, fuel and epoch
//! deadline on) against a native Rust function computing the same formula; decisions per second
//! through a simulation tenant (one reused instance, one core) against the same native formula; and
//! the time from writing a new module into the policies directory to that version serving.
//!
//! `cargo bench --bench policy`; criterion prints the medians, and each group prints its summary line
//! (p50/p99, decisions per second and the WASM/native ratio). With `GPU_MARKET_BENCH_BEFORE` naming
//! an earlier `pricing-demand.wasm` (e.g. `git show main:policies/pricing-demand.wasm > before.wasm`),
//! the quote summary measures it too, in the same run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use gpu_market::policy::wasm::{PolicyRuntime, PricingTenant, Slot};
use gpu_market::policy::{
    GpuFacts, MarketFacts, Policies, PricingRequest, RequestFacts, TimeFacts,
};
use tokio_util::sync::CancellationToken;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn request(gpu_id: &str) -> PricingRequest {
    PricingRequest {
        gpu: GpuFacts {
            gpu_id: gpu_id.into(),
            model: "RTX 4090".into(),
            memory_gb: 24.0,
            region: None,
            base_price: 2.0,
        },
        market: MarketFacts {
            total_gpus: 10,
            available_gpus: 2,
            booked_gpus: 8,
            utilization: 0.8,
            bookings_last_hour: 4,
            recent_prices: vec![1.9, 2.0, 2.1],
        },
        request: RequestFacts {
            duration_hours: 2.0,
            start_unix: 1_767_225_600,
        },
        time: TimeFacts {
            now_unix: 1_767_225_600,
            hour_of_day: 0,
            weekday: 3,
        },
        previous: None,
    }
}

/// pricing-demand's formula with its default parameters, natively: the baseline.
fn native_quote(request: &PricingRequest, previous: Option<f64>) -> (f64, f64, String) {
    let (min, max, threshold, util_w, rate_w, rate_cap, idle, smoothing) =
        (0.8, 2.5, 0.5, 1.0, 0.25, 2.0, 0.1, 0.5);
    let m = &request.market;
    let u = m.utilization.clamp(0.0, 1.0);
    let (target, reason) = if u == 0.0 && m.bookings_last_hour == 0 {
        (1.0 - idle, format!("idle discount ×{:.2}", 1.0 - idle))
    } else {
        let above = (u - threshold).max(0.0) / (1.0 - threshold);
        let rate = (f64::from(m.bookings_last_hour) / f64::from(m.total_gpus.max(1))).min(rate_cap);
        let t = 1.0 + util_w * above + rate_w * rate;
        (
            t,
            format!(
                "{:.0}% booked, {} bookings: demand ×{t:.2}",
                u * 100.0,
                m.bookings_last_hour
            ),
        )
    };
    let smoothed = previous
        .map_or(target, |p| p + smoothing * (target - p))
        .clamp(min, max);
    let multiplier = (smoothed * 10_000.0).round() / 10_000.0;
    let price = (request.gpu.base_price * multiplier * 10_000.0).round() / 10_000.0;
    (price, multiplier, format!("{reason}; {price:.4} AITBC/h"))
}

fn copy_policies() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        // The group was filtered out on the command line.
        return Duration::ZERO;
    }
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

/// A policies directory whose pricing slot serves `module` (same configuration and samples).
fn policies_with_pricing(module: &str) -> tempfile::TempDir {
    let dir = copy_policies();
    std::fs::copy(repo().join(module), dir.path().join("pricing-demand.wasm")).unwrap();
    dir
}

fn quote_latency(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = copy_policies();
    let runtime = rt
        .block_on(PolicyRuntime::start_unwatched(dir.path()))
        .unwrap();
    // The same slot serving a module that does almost nothing (but whose allocator grows its memory on
    // every fresh instance): shown for comparison.
    let flat_dir = policies_with_pricing("tests/fixtures/pricing-flat.wasm");
    let flat = rt
        .block_on(PolicyRuntime::start_unwatched(flat_dir.path()))
        .unwrap();
    let req = request("gpu_bench");

    let mut group = c.benchmark_group("quote");
    group.bench_function("wasm pricing-demand", |b| {
        b.to_async(&rt).iter(|| runtime.quote(req.clone()))
    });
    group.bench_function("wasm trivial module", |b| {
        b.to_async(&rt).iter(|| flat.quote(req.clone()))
    });
    group.bench_function("native same formula", |b| {
        b.iter(|| native_quote(std::hint::black_box(&req), Some(1.2)))
    });
    let batch: Vec<_> = (0..256).map(|i| request(&format!("gpu_{i}"))).collect();
    group.bench_function("wasm quote_batch 256", |b| {
        b.to_async(&rt).iter(|| runtime.quote_batch(batch.clone()))
    });
    group.finish();

    // p50 / p99 in one place, for the closing note.
    let samples = 5_000;
    let mut native: Vec<Duration> = (0..samples)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(native_quote(std::hint::black_box(&req), Some(1.2)));
            started.elapsed()
        })
        .collect();
    let (native50, native99) = (percentile(&mut native, 0.5), percentile(&mut native, 0.99));
    let mut modules = vec![(
        "after",
        repo().join("policies/pricing-demand.wasm"),
        runtime,
    )];
    // The module the previous version shipped, when named, measured in the same run by the same
    // host, its quotes interleaved with the others' so that a change in the machine's load falls
    // on both alike.
    let before_dir = std::env::var_os("GPU_MARKET_BENCH_BEFORE").map(|path| {
        let path = repo().join(path);
        let dir = policies_with_pricing(&path.to_string_lossy());
        let before = rt
            .block_on(PolicyRuntime::start_unwatched(dir.path()))
            .unwrap();
        modules.push(("before", path, before));
        dir
    });
    let flat_path = repo().join("tests/fixtures/pricing-flat.wasm");
    modules.push(("trivial", flat_path, flat));
    let summaries = summaries(&rt, &modules, &req, samples);
    let ratio = |d: Duration| d.as_secs_f64() / native50.as_secs_f64().max(1e-9);
    println!("native formula: p50 {native50:?} p99 {native99:?}");
    for ((label, path, _), s) in modules.iter().zip(&summaries) {
        let module = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        println!(
            "{label}: {module} fresh instance per quote p50 {:?} p99 {:?} ({:.1}x native) | host \
             overhead beyond the guest's work {:?} p50 (target <= 10us: fresh p50 - reused-instance \
             p50 {:?}) | {} fuel per quote (target <= 5000)",
            s.fresh50,
            s.fresh99,
            ratio(s.fresh50),
            s.fresh50.saturating_sub(s.reused50),
            s.reused50,
            s.fuel,
        );
    }
    println!(
        "(trivial: tests/fixtures/pricing-flat.wasm, whose allocator grows its memory on every fresh \
         instance)"
    );
    drop(before_dir);
}

/// One module's figures: quotes on a fresh instance each through the live runtime, and the same
/// quote on a reused instance (a simulation tenant: the same arguments lowered, guest work, answer
/// lifted and guardrails, without instantiation, teardown and the live path's permit and metrics).
struct Summary {
    fresh50: Duration,
    fresh99: Duration,
    reused50: Duration,
    fuel: u64,
}

fn summaries(
    rt: &tokio::runtime::Runtime,
    modules: &[(&str, PathBuf, std::sync::Arc<PolicyRuntime>)],
    req: &PricingRequest,
    samples: usize,
) -> Vec<Summary> {
    let policies = repo().join("policies");
    let mut tenants: Vec<PricingTenant> = modules
        .iter()
        .map(|(_, path, _)| PricingTenant::load(path, Some(&policies)).unwrap())
        .collect();
    let mut fresh = vec![Vec::with_capacity(samples); modules.len()];
    let mut reused = vec![Vec::with_capacity(samples); modules.len()];
    for _ in 0..samples {
        for (i, (_, _, runtime)) in modules.iter().enumerate() {
            let started = Instant::now();
            std::hint::black_box(rt.block_on(runtime.quote(req.clone())));
            fresh[i].push(started.elapsed());
        }
        for (i, tenant) in tenants.iter_mut().enumerate() {
            let started = Instant::now();
            std::hint::black_box(tenant.quote(std::hint::black_box(req)));
            reused[i].push(started.elapsed());
        }
    }
    tenants
        .iter_mut()
        .zip(fresh.iter_mut().zip(reused.iter_mut()))
        .map(|(tenant, (fresh, reused))| Summary {
            fresh50: percentile(fresh, 0.5),
            fresh99: percentile(fresh, 0.99),
            reused50: percentile(reused, 0.5),
            fuel: tenant.quote(req).fuel,
        })
        .collect()
}

fn reload_latency(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = copy_policies();
    let shutdown = CancellationToken::new();
    let runtime = rt
        .block_on(PolicyRuntime::start(dir.path(), shutdown.clone()))
        .unwrap();
    let target = dir.path().join("pricing-demand.wasm");
    let versions = [
        std::fs::read(repo().join("tests/fixtures/pricing-flat.wasm")).unwrap(),
        std::fs::read(repo().join("policies/pricing-demand.wasm")).unwrap(),
    ];
    let mut next = 0;
    let mut samples = Vec::new();
    let mut group = c.benchmark_group("hot reload");
    group.sample_size(10);
    group.bench_function("file written to new version serving", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let bytes = &versions[next % 2];
                next += 1;
                let sha = gpu_market::policy::wasm::sha256_hex(bytes);
                let tmp = dir.path().join(".bench.tmp");
                let started = Instant::now();
                std::fs::write(&tmp, bytes).unwrap();
                std::fs::rename(&tmp, &target).unwrap();
                while runtime.status(Slot::Pricing).sha256.as_deref() != Some(sha.as_str()) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let elapsed = started.elapsed();
                samples.push(elapsed);
                total += elapsed;
            }
            total
        })
    });
    group.finish();
    println!(
        "hot reload: p50 {:?} p99 {:?} over {} swaps",
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.99),
        samples.len()
    );
    shutdown.cancel();
}

/// Runs `decide(i)` for about `budget` and returns decisions per second (`per_call` decisions each).
fn decisions_per_second(budget: Duration, per_call: usize, mut decide: impl FnMut(usize)) -> f64 {
    for i in 0..1_000 {
        decide(i);
    }
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < budget {
        for _ in 0..1_000 {
            decide(calls);
            calls += 1;
        }
    }
    (calls * per_call) as f64 / started.elapsed().as_secs_f64()
}

/// A simulation's decision loop on one core: a tenant reusing its instance, single quotes and
/// batches, against the native formula.
fn tenant_throughput(c: &mut Criterion) {
    let policies = repo().join("policies");
    let mut tenant =
        PricingTenant::load(&policies.join("pricing-demand.wasm"), Some(&policies)).unwrap();
    tenant.check_stateless().unwrap();
    // Several GPUs, so previous multipliers and guardrail history are exercised as in a simulation.
    let requests: Vec<_> = (0..64).map(|i| request(&format!("gpu_{i}"))).collect();

    let mut group = c.benchmark_group("tenant");
    let mut next = 0;
    group.bench_function("wasm quote, reused instance", |b| {
        b.iter(|| {
            next += 1;
            tenant.quote(&requests[next % requests.len()])
        })
    });
    group.bench_function("wasm quote_batch 16, reused instance", |b| {
        b.iter(|| tenant.quote_batch(&requests[..16]))
    });
    group.bench_function("native same formula", |b| {
        b.iter(|| native_quote(std::hint::black_box(&requests[0]), Some(1.2)))
    });
    group.finish();

    let budget = Duration::from_secs(2);
    let single = decisions_per_second(budget, 1, |i| {
        std::hint::black_box(tenant.quote(&requests[i % requests.len()]));
    });
    let batched = decisions_per_second(budget, 16, |i| {
        let start = (i * 16) % requests.len();
        std::hint::black_box(tenant.quote_batch(&requests[start..start + 16]));
    });
    // The same path with a trivial guest: what the host, the canonical ABI (config and request
    // lowered on every call) and fuel metering cost without the formula.
    let mut flat = PricingTenant::load(
        &repo().join("tests/fixtures/pricing-flat.wasm"),
        Some(&policies),
    )
    .unwrap();
    let floor = decisions_per_second(budget, 1, |i| {
        std::hint::black_box(flat.quote(&requests[i % requests.len()]));
    });
    let fuel = tenant.quote(&requests[0]).fuel;
    let floor_fuel = flat.quote(&requests[0]).fuel;
    let native = decisions_per_second(budget, 1, |i| {
        std::hint::black_box(native_quote(
            std::hint::black_box(&requests[i % requests.len()]),
            Some(1.2),
        ));
    });
    println!(
        "tenant decisions/s on one core: wasm {single:.0} (batches of 16: {batched:.0}; {fuel} fuel \
         per quote) | trivial guest {floor:.0} ({floor_fuel} fuel) | native formula {native:.0} | native/wasm {:.1}x \
         (batched {:.1}x)",
        native / single,
        native / batched
    );
}

criterion_group!(benches, quote_latency, tenant_throughput, reload_latency);
criterion_main!(benches);
