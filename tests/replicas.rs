//! Two real `gpu-market serve` processes on one PostgreSQL database, hammered by 64 clients booking and
//! releasing 10 GPUs through both, while short bookings run out and both replicas' sweepers race to end
//! them. Afterwards the database must show that every invariant held.
//!
//! Runs only when `GPU_MARKET_TEST_POSTGRES_URL` is set (it prints a line and passes otherwise); when set,
//! an unreachable server fails the test.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::process::{LogsOnFailure, ServerProcess as Replica};
use common::{BookingRow, POSTGRES_ENV, TestDatabase, micros};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::Row;

const CLIENTS: usize = 64;
const WORKLOAD: Duration = Duration::from_secs(5);
/// GPUs 0..GENERAL are booked (short or long) and released at random; the rest are only ever booked
/// with short durations and never released, so they cycle through expiry by the sweepers.
const GPUS: usize = 10;
const GENERAL: usize = 7;
/// About 1.1 s.
const SHORT_HOURS: f64 = 0.0003;
/// Clock slack between one replica ending a booking and another starting the next one on the same GPU:
/// each takes its timestamp before its transaction commits.
const TIMESTAMP_SLACK_MICROS: i64 = 500_000;

#[derive(Default)]
struct Outcomes {
    /// booking_id → (order_id, gpu_id, total micros, replica)
    booked: HashMap<String, (String, String, i64)>,
    booked_ids_in_order: Vec<String>,
    /// booking_id → (refund micros, charged micros), one entry per 200 release
    released: Vec<(String, i64, i64)>,
    unexpected: Vec<String>,
    requests: usize,
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_postgres_keep_every_booking_invariant() {
    let admin_url = std::env::var(POSTGRES_ENV).unwrap_or_default();
    if admin_url.trim().is_empty() {
        println!(
            "replicas: {POSTGRES_ENV} is not set; the multi-replica test runs only against PostgreSQL"
        );
        return;
    }
    common::install_drivers();
    let database = TestDatabase::create().await; // panics when PostgreSQL cannot be reached
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    let config = dir.path().join("gpu-market.toml");
    std::fs::write(
        &config,
        "log = \"warn\"\n\
         [database]\nmax_connections = 16\n\
         [booking]\nsweep_interval_ms = 100\n\
         [heartbeat]\ncheck_interval_ms = 200\n\
         [pricing]\nrefresh_interval_ms = 1000\n",
    )
    .unwrap();

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    // Both start at once: migrations must cope with a concurrent replica.
    let mut replicas = vec![
        Replica::start("replica-a", dir.path(), database.url(), &config, &policies),
        Replica::start("replica-b", dir.path(), database.url(), &config, &policies),
    ];
    let _logs = LogsOnFailure(replicas.iter().map(|r| r.log.clone()).collect());
    for replica in &mut replicas {
        replica.wait_healthy(&client).await;
    }
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();

    let mut gpus = Vec::new();
    for i in 0..GPUS {
        let base = &bases[i % 2];
        let response = client
            .post(format!("{base}/v1/marketplace/gpu/register"))
            .header("X-Api-Key", "")
            .header("X-Miner-ID", "default")
            .json(&json!({ "gpu": { "name": format!("RTX 4090 #{i}"), "memory_gb": 24, "price_per_hour": 0.3 + i as f64 * 0.111111 } }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        let body: Value = response.json().await.unwrap();
        gpus.push(body["gpu_id"].as_str().unwrap().to_owned());
    }
    let gpus = Arc::new(gpus);
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));

    let deadline = Instant::now() + WORKLOAD;
    let mut tasks = Vec::new();
    for worker in 0..CLIENTS {
        let (client, bases, gpus, outcomes) = (
            client.clone(),
            bases.clone(),
            gpus.clone(),
            outcomes.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(worker as u64);
            while Instant::now() < deadline {
                let base = &bases[rng.random_range(0..2)];
                let index = rng.random_range(0..GPUS);
                let gpu_id = &gpus[index];
                let book = index >= GENERAL || rng.random_bool(0.5);
                if book {
                    let hours = if index >= GENERAL || rng.random_bool(0.3) {
                        SHORT_HOURS
                    } else {
                        1.0
                    };
                    let result = client
                        .post(format!("{base}/v1/marketplace/gpu/{gpu_id}/book"))
                        .header("X-Api-Key", "")
                        .json(&json!({ "gpu_id": gpu_id, "duration_hours": hours }))
                        .send()
                        .await;
                    let mut out = Vec::new();
                    match result {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let body: Value = response.json().await.unwrap_or(Value::Null);
                            match status {
                                201 => out.push(Ok(body)),
                                409 => {}
                                _ => out.push(Err(format!("book {gpu_id}: {status} {body}"))),
                            }
                        }
                        Err(err) => out.push(Err(format!("book {gpu_id}: {err}"))),
                    }
                    let mut o = outcomes.lock().unwrap();
                    o.requests += 1;
                    for item in out {
                        match item {
                            Ok(body) => {
                                let id = body["booking_id"].as_str().unwrap_or_default().to_owned();
                                let order =
                                    body["order_id"].as_str().unwrap_or_default().to_owned();
                                let total = micros(&body["total_cost"]);
                                if o.booked
                                    .insert(id.clone(), (order, gpu_id.clone(), total))
                                    .is_some()
                                {
                                    o.unexpected.push(format!("booking id {id} returned twice"));
                                }
                                o.booked_ids_in_order.push(id);
                            }
                            Err(message) => o.unexpected.push(message),
                        }
                    }
                } else {
                    let result = client
                        .post(format!("{base}/v1/marketplace/gpu/{gpu_id}/release"))
                        .header("X-Api-Key", "")
                        .send()
                        .await;
                    let entry = match result {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let body: Value = response.json().await.unwrap_or(Value::Null);
                            match status {
                                200 => Ok(Some((
                                    body["booking_id"].as_str().unwrap_or_default().to_owned(),
                                    micros(&body["refund"]),
                                    micros(&body["charged"]),
                                ))),
                                400 | 409 => Ok(None),
                                _ => Err(format!("release {gpu_id}: {status} {body}")),
                            }
                        }
                        Err(err) => Err(format!("release {gpu_id}: {err}")),
                    };
                    let mut o = outcomes.lock().unwrap();
                    o.requests += 1;
                    match entry {
                        Ok(Some(release)) => o.released.push(release),
                        Ok(None) => {}
                        Err(message) => o.unexpected.push(message),
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let outcomes = Arc::try_unwrap(outcomes)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap();
    println!(
        "replicas: {} requests, {} bookings, {} releases",
        outcomes.requests,
        outcomes.booked.len(),
        outcomes.released.len()
    );
    assert!(
        outcomes.unexpected.is_empty(),
        "unexpected answers: {:#?}",
        outcomes.unexpected
    );
    assert!(
        !outcomes.booked.is_empty() && !outcomes.released.is_empty(),
        "the workload did book and release"
    );

    // Let the short bookings still running reach their end and be swept.
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .connect(database.url())
        .await
        .unwrap();
    common::wait_until_swept(&pool, Duration::from_secs(20)).await;

    let bookings: Vec<BookingRow> = common::all_bookings(&pool).await;
    let by_id: HashMap<&str, &BookingRow> = bookings.iter().map(|b| (b.id.as_str(), b)).collect();

    // Never two active bookings on one GPU.
    let mut active_per_gpu: HashMap<&str, usize> = HashMap::new();
    for b in bookings.iter().filter(|b| b.status == "active") {
        *active_per_gpu.entry(b.gpu_id.as_str()).or_default() += 1;
    }
    assert!(
        active_per_gpu.values().all(|n| *n <= 1),
        "two active bookings on one GPU: {active_per_gpu:?}"
    );

    // ... and never overlapping in time: on each GPU, any two bookings' lifetimes [start, end) share at
    // most the timestamp slack (a still-active booking lasts until now).
    let mut per_gpu: HashMap<&str, Vec<&BookingRow>> = HashMap::new();
    for b in &bookings {
        per_gpu.entry(b.gpu_id.as_str()).or_default().push(b);
    }
    let now = now_micros();
    let mut worst_overlap = 0;
    for (gpu, list) in &per_gpu {
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                let overlap = a.ended_at.unwrap_or(now).min(b.ended_at.unwrap_or(now))
                    - a.start_at.max(b.start_at);
                worst_overlap = worst_overlap.max(overlap);
                assert!(
                    overlap <= TIMESTAMP_SLACK_MICROS,
                    "GPU {gpu}: {} [{}, {:?}) and {} [{}, {:?}) overlap by {overlap} µs",
                    a.id,
                    a.start_at,
                    a.ended_at,
                    b.id,
                    b.start_at,
                    b.ended_at
                );
            }
        }
    }
    println!(
        "replicas: largest overlap of two bookings' timestamps on one GPU: {worst_overlap} µs"
    );

    // Every 201 is exactly one booking row with its own order; no row without a 201.
    assert_eq!(
        bookings.len(),
        outcomes.booked.len(),
        "booking rows vs 201 answers"
    );
    let order_ids: HashSet<&str> = bookings.iter().map(|b| b.order_id.as_str()).collect();
    assert_eq!(
        order_ids.len(),
        bookings.len(),
        "one distinct order per booking"
    );
    for (id, (order_id, gpu_id, total)) in &outcomes.booked {
        let row = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("booking {id} answered 201 but is not stored"));
        assert_eq!(&row.order_id, order_id, "booking {id}: order id");
        assert_eq!(&row.gpu_id, gpu_id, "booking {id}: GPU");
        assert_eq!(row.total_micro, *total, "booking {id}: total");
    }

    // Money: every ended booking splits its total exactly; active ones are not settled yet.
    for b in &bookings {
        match (b.status.as_str(), b.refund_micro, b.charged_micro) {
            ("active", None, None) => {}
            ("active", refund, charged) => panic!(
                "active booking {} already settled: {refund:?} {charged:?}",
                b.id
            ),
            (_, Some(refund), Some(charged)) => {
                assert_eq!(
                    refund + charged,
                    b.total_micro,
                    "booking {}: refund + charged = total",
                    b.id
                );
                assert!(
                    refund >= 0 && charged >= 0,
                    "booking {}: {refund} / {charged}",
                    b.id
                );
                assert!(
                    b.ended_at.is_some(),
                    "booking {} ended without ended_at",
                    b.id
                );
            }
            (status, refund, charged) => panic!(
                "{status} booking {} unsettled: {refund:?} {charged:?}",
                b.id
            ),
        }
    }

    // Each booking ended once: one 200 release at most, whose split is the one stored; the others that
    // ended ran to their end and were charged in full, never before their time.
    let mut released: HashMap<&str, (i64, i64)> = HashMap::new();
    for (id, refund, charged) in &outcomes.released {
        assert!(
            released.insert(id.as_str(), (*refund, *charged)).is_none(),
            "booking {id} released twice"
        );
        let row = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("released unknown booking {id}"));
        assert_eq!(
            refund + charged,
            row.total_micro,
            "release of {id}: refund + charged = total"
        );
        assert_eq!(
            (row.refund_micro, row.charged_micro),
            (Some(*refund), Some(*charged)),
            "release of {id} kept"
        );
        assert_eq!(
            row.status, "completed",
            "released by its own client (local): {id}"
        );
    }
    let mut swept = 0;
    for b in bookings
        .iter()
        .filter(|b| b.status != "active" && !released.contains_key(b.id.as_str()))
    {
        swept += 1;
        assert_eq!(b.status, "completed", "booking {} ran to its end", b.id);
        assert_eq!(
            b.charged_micro,
            Some(b.total_micro),
            "booking {} charged in full",
            b.id
        );
        assert!(
            b.ended_at.unwrap() >= b.end_at,
            "booking {} ended before its time",
            b.id
        );
    }
    println!("replicas: {swept} bookings ended by the sweepers");
    assert!(
        swept >= 3,
        "short bookings did run out during the test ({swept})"
    );

    // The GPU rows agree with the bookings.
    let rows = sqlx::query("SELECT id, status, total_bookings FROM gpus")
        .fetch_all(&pool)
        .await
        .unwrap();
    for row in rows {
        let id: String = row.get("id");
        let status: String = row.get("status");
        let total: i64 = row.get("total_bookings");
        let active = active_per_gpu.get(id.as_str()).copied().unwrap_or(0);
        let expected = if active == 1 { "booked" } else { "available" };
        assert_eq!(status, expected, "GPU {id} with {active} active bookings");
        let count = per_gpu.get(id.as_str()).map_or(0, Vec::len) as i64;
        assert_eq!(total, count, "GPU {id}: total_bookings");
    }
    pool.close().await;
    drop(replicas);
}
