//! Crash durability: clients book, release and review while the server is killed with SIGKILL at random
//! moments and restarted on the same database. Every request that got a 2xx must be in the database
//! exactly as answered (no lost or half-written booking, order, refund or review), aggregates must equal
//! their rows, and bookings whose end passed while the server was down must end exactly once after the
//! restart. Runs on SQLite, and on PostgreSQL when `GPU_MARKET_TEST_POSTGRES_URL` is set.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::process::{LogsOnFailure, ServerProcess};
use common::{BookingRow, TestDatabase, micros};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::Row;

const CLIENTS: usize = 16;
const GPUS: usize = 10;
/// The last GPUs are left to the test itself: booked short just before each kill, never released, so
/// that their end passes while the server is down.
const DOWNTIME_GPUS: usize = 2;
const CRASHES: usize = 3;
/// About 1.4 s: long enough to outlive a crash's downtime now and then, short enough to end in the test.
const SHORT_HOURS: f64 = 0.0004;
/// How long the server stays down after each kill: short bookings run out meanwhile.
const DOWNTIME: Duration = Duration::from_millis(1_500);

/// What the clients were told (2xx answers), and how many requests got no answer at all (the kill cut
/// them off: they may or may not have been applied, but nothing else may appear).
#[derive(Default)]
struct Acknowledged {
    /// booking_id → (order_id, gpu_id, total micros)
    booked: HashMap<String, (String, String, i64)>,
    /// booking_id → (refund micros, charged micros)
    released: HashMap<String, (i64, i64)>,
    /// review_id → (gpu_id, rating, stored status)
    reviews: HashMap<String, (String, i64, &'static str)>,
    unanswered_books: usize,
    unanswered_reviews: usize,
    unexpected: Vec<String>,
}

enum Answer {
    Status(u16, Value),
    /// No answer: the connection died with the server.
    Lost,
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.json::<Value>().await {
                Ok(body) => Answer::Status(status, body),
                // Headers arrived but the body was cut off: the outcome is as unknown as no answer.
                Err(_) => Answer::Lost,
            }
        }
        Err(_) => Answer::Lost,
    }
}

/// One client's work until the server dies under it.
async fn client_loop(
    worker: u64,
    seed: u64,
    client: reqwest::Client,
    base: String,
    gpus: Arc<Vec<String>>,
    acknowledged: Arc<Mutex<Acknowledged>>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (worker << 32));
    let mut lost_in_a_row = 0;
    let gpus = &gpus[..GPUS - DOWNTIME_GPUS];
    // Once the server is gone every request is lost; a few in a row means it is time to stop.
    while lost_in_a_row < 3 {
        let gpu_id = &gpus[rng.random_range(0..gpus.len())];
        let roll: f64 = rng.random();
        let answer;
        if roll < 0.45 {
            let hours = if rng.random_bool(0.4) {
                SHORT_HOURS
            } else {
                1.0
            };
            answer = send(
                client
                    .post(format!("{base}/v1/marketplace/gpu/{gpu_id}/book"))
                    .header("X-Api-Key", "")
                    .json(&json!({ "gpu_id": gpu_id, "duration_hours": hours })),
            )
            .await;
            let mut ack = acknowledged.lock().unwrap();
            match &answer {
                Answer::Status(201, body) => {
                    let id = body["booking_id"].as_str().unwrap_or_default().to_owned();
                    let order = body["order_id"].as_str().unwrap_or_default().to_owned();
                    let total = micros(&body["total_cost"]);
                    if ack
                        .booked
                        .insert(id.clone(), (order, gpu_id.clone(), total))
                        .is_some()
                    {
                        ack.unexpected
                            .push(format!("booking {id} acknowledged twice"));
                    }
                }
                Answer::Status(409, _) => {}
                Answer::Status(status, body) => ack
                    .unexpected
                    .push(format!("book {gpu_id}: {status} {body}")),
                Answer::Lost => ack.unanswered_books += 1,
            }
        } else if roll < 0.8 {
            answer = send(
                client
                    .post(format!("{base}/v1/marketplace/gpu/{gpu_id}/release"))
                    .header("X-Api-Key", ""),
            )
            .await;
            let mut ack = acknowledged.lock().unwrap();
            match &answer {
                Answer::Status(200, body) => {
                    let id = body["booking_id"].as_str().unwrap_or_default().to_owned();
                    let split = (micros(&body["refund"]), micros(&body["charged"]));
                    if ack.released.insert(id.clone(), split).is_some() {
                        ack.unexpected.push(format!("booking {id} released twice"));
                    }
                }
                Answer::Status(400 | 409, _) | Answer::Lost => {}
                Answer::Status(status, body) => ack
                    .unexpected
                    .push(format!("release {gpu_id}: {status} {body}")),
            }
        } else {
            let rating = rng.random_range(1..=5_i64);
            answer = send(
                client
                    .post(format!("{base}/v1/marketplace/gpu/{gpu_id}/reviews"))
                    .header("X-Api-Key", "")
                    .json(&json!({ "rating": rating, "comment": format!("run {worker}: solid card") })),
            )
            .await;
            let mut ack = acknowledged.lock().unwrap();
            match &answer {
                Answer::Status(201, body) => {
                    let id = body["review_id"].as_str().unwrap_or_default().to_owned();
                    let stored = match body["status"].as_str() {
                        Some("review_added") => "accepted",
                        _ => "flagged",
                    };
                    ack.reviews.insert(id, (gpu_id.clone(), rating, stored));
                }
                Answer::Status(400, _) => {}
                Answer::Status(status, body) => ack
                    .unexpected
                    .push(format!("review {gpu_id}: {status} {body}")),
                Answer::Lost => ack.unanswered_reviews += 1,
            }
        }
        lost_in_a_row = if matches!(answer, Answer::Lost) {
            lost_in_a_row + 1
        } else {
            0
        };
    }
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill_and_overdue_bookings_end_once_after_restart() {
    common::install_drivers();
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    let config = dir.path().join("gpu-market.toml");
    std::fs::write(
        &config,
        "log = \"warn\"\n\
         [booking]\nsweep_interval_ms = 100\n\
         [heartbeat]\ncheck_interval_ms = 200\n",
    )
    .unwrap();
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("crash: seed {seed} (set CRASH_SEED to repeat)");
    let mut rng = StdRng::seed_from_u64(seed);

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut server = ServerProcess::start("server", dir.path(), database.url(), &config, &policies);
    let _logs = LogsOnFailure(vec![server.log.clone()]);
    server.wait_healthy(&client).await;

    let mut gpus = Vec::new();
    for i in 0..GPUS {
        let response = client
            .post(format!("{}/v1/marketplace/gpu/register", server.base))
            .header("X-Api-Key", "")
            .header("X-Miner-ID", "default")
            .json(&json!({ "gpu": { "name": format!("RTX 4090 #{i}"), "memory_gb": 24, "price_per_hour": 0.5 + i as f64 * 0.1 } }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        let body: Value = response.json().await.unwrap();
        gpus.push(body["gpu_id"].as_str().unwrap().to_owned());
    }
    let gpus = Arc::new(gpus);
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    // (booking id, killed at, restarted at): bookings whose end passed during a downtime.
    let mut ended_while_down = Vec::new();

    for crash in 0..CRASHES {
        let tasks: Vec<_> = (0..CLIENTS as u64)
            .map(|worker| {
                tokio::spawn(client_loop(
                    worker,
                    seed.wrapping_add(crash as u64),
                    client.clone(),
                    server.base.clone(),
                    gpus.clone(),
                    acknowledged.clone(),
                ))
            })
            .collect();
        let uptime = Duration::from_millis(rng.random_range(400..2_000));
        tokio::time::sleep(uptime).await;
        let mut booked_before_kill = Vec::new();
        for gpu_id in &gpus[GPUS - DOWNTIME_GPUS..] {
            let response = client
                .post(format!("{}/v1/marketplace/gpu/{gpu_id}/book", server.base))
                .header("X-Api-Key", "")
                .json(&json!({ "gpu_id": gpu_id, "duration_hours": SHORT_HOURS }))
                .send()
                .await
                .unwrap();
            // 409: the previous downtime's booking has not been swept yet; the other GPU still counts.
            if response.status().as_u16() == 201 {
                let body: Value = response.json().await.unwrap();
                let id = body["booking_id"].as_str().unwrap().to_owned();
                let order = body["order_id"].as_str().unwrap().to_owned();
                let mut ack = acknowledged.lock().unwrap();
                ack.booked.insert(
                    id.clone(),
                    (order, gpu_id.clone(), micros(&body["total_cost"])),
                );
                booked_before_kill.push(id);
            }
        }
        let killed_at = now_micros();
        server.child.start_kill().expect("SIGKILL the server");
        let _ = server.child.wait().await;
        println!("crash {crash}: killed after {uptime:?}");
        for task in tasks {
            task.await.unwrap();
        }
        tokio::time::sleep(DOWNTIME).await;
        let restarted_at = now_micros();
        server = ServerProcess::start("server", dir.path(), database.url(), &config, &policies);
        server.wait_healthy(&client).await;
        ended_while_down.extend(
            booked_before_kill
                .into_iter()
                .map(|id| (id, killed_at, restarted_at)),
        );
    }
    let ack = Arc::try_unwrap(acknowledged)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap();
    println!(
        "crash: {} bookings, {} releases, {} reviews acknowledged; {} bookings and {} reviews unanswered",
        ack.booked.len(),
        ack.released.len(),
        ack.reviews.len(),
        ack.unanswered_books,
        ack.unanswered_reviews
    );
    assert!(
        ack.unexpected.is_empty(),
        "unexpected answers: {:#?}",
        ack.unexpected
    );
    assert!(
        !ack.booked.is_empty() && !ack.released.is_empty() && !ack.reviews.is_empty(),
        "the workload did book, release and review"
    );

    // Bookings that ran out while the server was down, or since, end after the restart.
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .connect(database.url())
        .await
        .unwrap();
    common::wait_until_swept(&pool, Duration::from_secs(20)).await;

    let bookings: Vec<BookingRow> = common::all_bookings(&pool).await;
    let by_id: HashMap<&str, &BookingRow> = bookings.iter().map(|b| (b.id.as_str(), b)).collect();

    // Every acknowledged booking is there as answered; any other row comes from a request the kill cut off.
    for (id, (order_id, gpu_id, total)) in &ack.booked {
        let row = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("booking {id} answered 201 but is lost"));
        assert_eq!(&row.order_id, order_id, "booking {id}: order id");
        assert_eq!(&row.gpu_id, gpu_id, "booking {id}: GPU");
        assert_eq!(row.total_micro, *total, "booking {id}: total");
    }
    let unacknowledged = bookings.len() - ack.booked.len();
    assert!(
        unacknowledged <= ack.unanswered_books,
        "{unacknowledged} booking rows without a 201, but only {} requests went unanswered",
        ack.unanswered_books
    );
    let orders: HashSet<&str> = bookings.iter().map(|b| b.order_id.as_str()).collect();
    assert_eq!(orders.len(), bookings.len(), "one order per booking");

    // Every acknowledged release kept its split.
    for (id, (refund, charged)) in &ack.released {
        let row = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("released unknown booking {id}"));
        assert_eq!(
            (row.refund_micro, row.charged_micro),
            (Some(*refund), Some(*charged)),
            "release of {id} kept"
        );
        assert_eq!(row.status, "completed", "released booking {id}");
    }

    // No half-written booking: settled exactly when ended, and the split adds up.
    let mut active_per_gpu: HashMap<&str, usize> = HashMap::new();
    let mut ran_out = 0;
    for b in &bookings {
        match (b.status.as_str(), b.refund_micro, b.charged_micro) {
            ("active", None, None) => {
                assert!(b.ended_at.is_none(), "active booking {} has ended_at", b.id);
                *active_per_gpu.entry(b.gpu_id.as_str()).or_default() += 1;
            }
            (_, Some(refund), Some(charged)) => {
                assert_eq!(
                    refund + charged,
                    b.total_micro,
                    "booking {}: refund + charged",
                    b.id
                );
                assert!(
                    refund >= 0 && charged >= 0,
                    "booking {}: {refund} / {charged}",
                    b.id
                );
                let ended_at = b
                    .ended_at
                    .unwrap_or_else(|| panic!("booking {} settled without ended_at", b.id));
                if !ack.released.contains_key(&b.id) && refund == 0 {
                    // Ran to its end (perhaps during a downtime): charged in full, never early.
                    assert!(
                        ended_at >= b.end_at,
                        "booking {} ended before its time",
                        b.id
                    );
                    ran_out += 1;
                }
            }
            (status, refund, charged) => {
                panic!(
                    "{status} booking {} half-written: {refund:?} / {charged:?}",
                    b.id
                )
            }
        }
    }
    assert!(
        active_per_gpu.values().all(|n| *n == 1),
        "two active bookings on one GPU: {active_per_gpu:?}"
    );
    println!("crash: {ran_out} bookings ran to their end");

    // Those whose end passed while the server was down ended once, after the restart, charged in full.
    assert!(
        !ended_while_down.is_empty(),
        "no booking was left to end during a downtime"
    );
    for (id, killed_at, restarted_at) in &ended_while_down {
        let row = by_id[id.as_str()];
        assert!(
            row.end_at > *killed_at && row.end_at < *restarted_at,
            "booking {id} was meant to end during the downtime"
        );
        assert_eq!(
            row.status, "completed",
            "booking {id} ended after the restart"
        );
        assert_eq!(
            row.charged_micro,
            Some(row.total_micro),
            "booking {id} charged once, in full"
        );
        assert!(
            row.ended_at.is_some_and(|ended| ended >= *restarted_at),
            "booking {id} ended by the restarted server"
        );
    }
    println!(
        "crash: {} bookings ended during a downtime, each once after the restart",
        ended_while_down.len()
    );

    // Reviews: every acknowledged one is stored as answered; no more rows than requests.
    let rows = sqlx::query("SELECT id, gpu_id, rating, status FROM reviews")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut stored_reviews = HashMap::new();
    for row in &rows {
        let id: String = row.get("id");
        let gpu: String = row.get("gpu_id");
        let rating: i64 = row.get("rating");
        let status: String = row.get("status");
        stored_reviews.insert(id, (gpu, rating, status));
    }
    for (id, (gpu, rating, status)) in &ack.reviews {
        let stored = stored_reviews
            .get(id)
            .unwrap_or_else(|| panic!("review {id} answered 201 but is lost"));
        assert_eq!(
            (&stored.0, stored.1, stored.2.as_str()),
            (gpu, *rating, *status),
            "review {id}"
        );
    }
    let unacknowledged = stored_reviews.len() - ack.reviews.len();
    assert!(
        unacknowledged <= ack.unanswered_reviews,
        "{unacknowledged} review rows without a 201, but only {} requests went unanswered",
        ack.unanswered_reviews
    );

    // Aggregates equal their rows.
    let gpu_rows =
        sqlx::query("SELECT id, status, total_bookings, rating_sum, rating_count FROM gpus")
            .fetch_all(&pool)
            .await
            .unwrap();
    for row in gpu_rows {
        let id: String = row.get("id");
        let status: String = row.get("status");
        let total_bookings: i64 = row.get("total_bookings");
        let rating_sum: i64 = row.get("rating_sum");
        let rating_count: i64 = row.get("rating_count");
        let active = active_per_gpu.get(id.as_str()).copied().unwrap_or(0);
        let expected = if active == 1 { "booked" } else { "available" };
        assert_eq!(status, expected, "GPU {id} with {active} active bookings");
        let count = bookings.iter().filter(|b| b.gpu_id == id).count() as i64;
        assert_eq!(total_bookings, count, "GPU {id}: total_bookings");
        let accepted: Vec<i64> = stored_reviews
            .values()
            .filter(|(gpu, _, status)| *gpu == id && status == "accepted")
            .map(|(_, rating, _)| *rating)
            .collect();
        assert_eq!(
            (rating_sum, rating_count),
            (accepted.iter().sum::<i64>(), accepted.len() as i64),
            "GPU {id}: rating aggregates"
        );
    }
    pool.close().await;
}
