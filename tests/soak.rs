//! Soak: mixed traffic at a fixed rate for a bounded time, with the pricing policy hot-swapped through
//! the admin API every 30 s, reporting errors, p99 latency and the server's RSS per interval.
//!
//! Ignored by a plain `cargo test` (it runs for a minute or more); `.ci/run` runs the 60-second version:
//!
//!     SOAK_SECONDS=60 cargo test --test soak -- --ignored --nocapture
//!     SOAK_SECONDS=600 cargo test --release --test soak -- --ignored --nocapture   # the 10-minute soak
//!
//! Knobs: SOAK_SECONDS (60), SOAK_RATE requests/s (200), SOAK_SWAP_SECONDS (30), SOAK_INTERVAL_SECONDS
//! (a sixth of the run, at most 60). It asserts what does not depend on the machine's speed: zero errors
//! (no 5xx, no transport failure, no answer outside the contract), every hot swap served, and RSS grown
//! by under 10 % from the end of the warm-up (the first hot swap and one interval more) to the end.
//! p99 is printed, not asserted.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestDatabase;
use common::process::{LogsOnFailure, ServerProcess};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Interval {
    latencies_micros: Vec<u64>,
    errors: Vec<String>,
}

fn p99(latencies: &mut [u64]) -> Duration {
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    latencies.sort_unstable();
    let index = (latencies.len() * 99).div_ceil(100).saturating_sub(1);
    Duration::from_micros(latencies[index])
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// One request of the mix; `Err` is an error of the soak's count.
async fn one_request(
    client: &reqwest::Client,
    base: &str,
    gpus: &[String],
    rng: &mut StdRng,
) -> Result<(), String> {
    let gpu_id = &gpus[rng.random_range(0..gpus.len())];
    let roll: f64 = rng.random();
    let (what, request, expected): (&str, reqwest::RequestBuilder, &[u16]) = if roll < 0.35 {
        let filter = match rng.random_range(0..3) {
            0 => "",
            1 => "?model=RTX%204090",
            _ => "?memory_min=40&limit=20",
        };
        let url = format!("{base}/v1/marketplace/gpu/list{filter}");
        ("list", client.get(url), &[200])
    } else if roll < 0.55 {
        let url = format!("{base}/v1/marketplace/gpu/{gpu_id}");
        ("details", client.get(url), &[200])
    } else if roll < 0.65 {
        let model = ["RTX%204090", "A100", "H100"][rng.random_range(0..3)];
        let url = format!("{base}/v1/marketplace/pricing/{model}");
        ("pricing", client.get(url), &[200])
    } else if roll < 0.8 {
        let hours = [0.5, 1.0, 2.0][rng.random_range(0..3)];
        let url = format!("{base}/v1/marketplace/gpu/{gpu_id}/book");
        let body = json!({ "gpu_id": gpu_id, "duration_hours": hours });
        ("book", client.post(url).json(&body), &[201, 409])
    } else if roll < 0.93 {
        let url = format!("{base}/v1/marketplace/gpu/{gpu_id}/release");
        ("release", client.post(url), &[200, 400, 409])
    } else {
        let url = format!("{base}/v1/marketplace/gpu/{gpu_id}/reviews");
        let body = json!({ "rating": rng.random_range(1..=5), "comment": "steady under load" });
        // The moderation policy may reject a prolific reviewer (400): an answer of the contract.
        ("review", client.post(url).json(&body), &[201, 400])
    };
    let response = request
        .header("X-Api-Key", "")
        .send()
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    let status = response.status().as_u16();
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("{what}: {status} with a body that is not JSON: {e}"))?;
    if expected.contains(&status) {
        Ok(())
    } else {
        Err(format!("{what}: {status} {body}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a minute or more of traffic; .ci/run runs it with SOAK_SECONDS=60"]
async fn mixed_traffic_with_policy_hot_swaps_keeps_errors_at_zero_and_memory_flat() {
    let seconds = knob("SOAK_SECONDS", 60);
    let rate = knob("SOAK_RATE", 200).max(1);
    let swap_every = Duration::from_secs(knob("SOAK_SWAP_SECONDS", 30).max(1));
    let interval = Duration::from_secs(knob("SOAK_INTERVAL_SECONDS", (seconds / 6).clamp(1, 60)));
    let intervals = (seconds / interval.as_secs()).max(2) as usize;

    common::install_drivers();
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    for entry in std::fs::read_dir(repo.join("policies")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, policies.join(path.file_name().unwrap())).unwrap();
    }
    let modules = [
        std::fs::read(repo.join("policies/pricing-scarcity.wasm")).unwrap(),
        std::fs::read(repo.join("policies/pricing-demand.wasm")).unwrap(),
    ];
    let config = dir.path().join("gpu-market.toml");
    std::fs::write(
        &config,
        "log = \"warn\"\n[booking]\nsweep_interval_ms = 500\n",
    )
    .unwrap();

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut server = ServerProcess::start("soak", dir.path(), database.url(), &config, &policies);
    let _logs = LogsOnFailure(vec![server.log.clone()]);
    server.wait_healthy(&client).await;
    let pid = server.child.id().expect("the server's pid");

    let mut gpus = Vec::new();
    for i in 0..60 {
        let (model, memory) = [("RTX 4090", 24), ("A100", 80), ("H100", 80)][i % 3];
        let response = client
            .post(format!("{}/v1/marketplace/gpu/register", server.base))
            .header("X-Api-Key", "")
            .header("X-Miner-ID", "default")
            .json(&json!({ "gpu": { "name": model, "memory_gb": memory, "price_per_hour": 0.5 + (i % 7) as f64 * 0.25 } }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201, "register GPU {i}");
        let body: Value = response.json().await.unwrap();
        gpus.push(body["gpu_id"].as_str().unwrap().to_owned());
    }
    let gpus = Arc::new(gpus);

    let current: Arc<Mutex<Interval>> = Arc::default();
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut rng = StdRng::seed_from_u64(7);
    let mut next_swap = start + swap_every;
    let mut swaps = 0usize;
    let mut swap_errors = Vec::new();
    let mut report = Vec::new();
    let mut all_errors = Vec::new();
    let mut in_flight = tokio::task::JoinSet::new();
    for index in 0..intervals {
        let interval_end = start + interval * (index as u32 + 1);
        while Instant::now() < interval_end {
            ticker.tick().await;
            if Instant::now() >= next_swap {
                next_swap += swap_every;
                let module = modules[swaps % 2].clone();
                swaps += 1;
                let response = client
                    .put(format!("{}/v1/admin/policies/pricing", server.base))
                    .header("X-Api-Key", "")
                    .header("Content-Type", "application/wasm")
                    .body(module)
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => swap_errors.push(format!("swap {swaps}: {}", r.status())),
                    Err(e) => swap_errors.push(format!("swap {swaps}: {e}")),
                }
            }
            let (client, base, gpus, current) = (
                client.clone(),
                server.base.clone(),
                gpus.clone(),
                current.clone(),
            );
            let mut request_rng = StdRng::seed_from_u64(rng.random());
            in_flight.spawn(async move {
                let began = Instant::now();
                let outcome = one_request(&client, &base, &gpus, &mut request_rng).await;
                let mut interval = current.lock().unwrap();
                interval
                    .latencies_micros
                    .push(began.elapsed().as_micros() as u64);
                if let Err(error) = outcome {
                    interval.errors.push(error);
                }
            });
            while in_flight.try_join_next().is_some() {}
        }
        let mut finished = std::mem::take(&mut *current.lock().unwrap());
        let rss = rss_kib(pid);
        let line = format!(
            "soak: interval {:>2} ({:>4} s): {:>6} requests, {:>3} errors, p99 {:>8.2?}, RSS {:>7} KiB",
            index + 1,
            (interval * (index as u32 + 1)).as_secs(),
            finished.latencies_micros.len(),
            finished.errors.len(),
            p99(&mut finished.latencies_micros),
            rss
        );
        println!("{line}");
        report.push(rss);
        all_errors.extend(finished.errors);
    }
    while in_flight.join_next().await.is_some() {}
    all_errors.extend(std::mem::take(&mut current.lock().unwrap().errors));
    println!("soak: {swaps} policy hot swaps");

    assert!(swap_errors.is_empty(), "hot swaps failed: {swap_errors:?}");
    assert!(
        swaps as u64 >= seconds / swap_every.as_secs().max(1),
        "the pricing policy was swapped every {swap_every:?} ({swaps} swaps)"
    );
    all_errors.truncate(20);
    assert!(all_errors.is_empty(), "errors (first 20): {all_errors:#?}");
    // Warm-up lasts until both pricing modules have been compiled once (the first hot swap) and one
    // interval has passed: from then on the server holds what it will hold.
    let warm_intervals = (swap_every.as_secs().div_ceil(interval.as_secs().max(1)) as usize + 1)
        .min(report.len() - 1);
    let (warm, last) = (report[warm_intervals - 1], report[report.len() - 1]);
    let growth = last as f64 / warm.max(1) as f64 - 1.0;
    println!(
        "soak: RSS {warm} KiB after warm-up, {last} KiB at the end ({:+.1} %)",
        growth * 100.0
    );
    assert!(
        growth < 0.10,
        "RSS grew by {:.1} % after warm-up",
        growth * 100.0
    );
    drop(server);
}
