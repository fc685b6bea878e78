//! Issue 12, graceful shutdown, black box: the real binary gets SIGTERM while requests are in flight.
//! It stops accepting at once, finishes those requests (2xx), stops its background tasks, closes the
//! pool and exits 0 within `server.shutdown_grace_ms`; what it acknowledged is in the database.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const IN_FLIGHT: usize = 6;

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits_0() {
    install_drivers();
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(
        dir.path(),
        database.url(),
        &[],
        &[("GPU_MARKET_SERVER__SHUTDOWN_GRACE_MS", "20000")],
    )
    .await;
    let client = reqwest::Client::new();
    let mut gpus = Vec::new();
    for i in 0..IN_FLIGHT {
        let reply = client
            .post(format!("{}/v1/marketplace/gpu/register", server.base()))
            .header("X-Miner-ID", "default")
            .json(&json!({ "gpu": { "name": format!("RTX {i}"), "memory_gb": 24, "price_per_hour": 0.5 } }))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status().as_u16(), 201);
        let body: serde_json::Value = reply.json().await.unwrap();
        gpus.push(body["gpu_id"].as_str().unwrap().to_owned());
    }

    // Bookings whose bodies are half sent: in flight on the server until the rest arrives.
    let body = serde_json::to_vec(&json!({ "duration_hours": 1 })).unwrap();
    let mut streams = Vec::new();
    for gpu in &gpus {
        let path = format!("/v1/marketplace/gpu/{gpu}/book");
        streams.push(partial_request(server.addr, "POST", &path, &[], &body, 3).await);
    }
    // Let the server accept the connections and read the heads (generous on a busy machine).
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.signal(libc::SIGTERM);
    let signalled = Instant::now();

    // New connections are refused once the listener is closed.
    eventually(
        Duration::from_secs(10),
        "new connections refused",
        || async {
            tokio::net::TcpStream::connect(server.addr)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server waits for its in-flight requests"
    );

    for stream in streams {
        let reply = finish_request(stream, &body[3..]).await;
        assert_eq!(reply.status, 201, "in-flight booking: {}", reply.text);
    }
    let status = server.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "exit status {status}: {}",
        server.log_text()
    );
    assert!(signalled.elapsed() < Duration::from_secs(20));
    let log = server.log_text();
    assert!(log.contains("shutdown requested"), "{log}");
    assert!(log.contains("gpu-market stopped"), "{log}");

    // Every acknowledged booking is there, whole: one active booking per GPU, counters agree.
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(database.url())
        .await
        .unwrap();
    for gpu in &gpus {
        let (active, status, total): (i64, String, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM bookings b WHERE b.gpu_id = g.id AND b.status = 'active'), \
             g.status, g.total_bookings FROM gpus g WHERE g.id = $1",
        )
        .bind(gpu)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!((active, status.as_str(), total), (1, "booked", 1), "{gpu}");
    }
    pool.close().await;
}

#[tokio::test]
async fn a_stuck_request_does_not_hold_the_exit_beyond_the_grace() {
    install_drivers();
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(
        dir.path(),
        database.url(),
        &[],
        &[
            ("GPU_MARKET_SERVER__SHUTDOWN_GRACE_MS", "1000"),
            ("GPU_MARKET_SERVER__REQUEST_TIMEOUT_MS", "0"),
        ],
    )
    .await;
    let body = serde_json::to_vec(&json!({ "gpu": { "name": "stuck" } })).unwrap();
    let stream = partial_request(
        server.addr,
        "POST",
        "/v1/marketplace/gpu/register",
        &[("X-Miner-ID", "default")],
        &body,
        4,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let status = server.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "exit status {status}: {}",
        server.log_text()
    );
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "waited for the grace: {took:?}"
    );
    assert!(
        took < Duration::from_secs(15),
        "bounded by the grace: {took:?}"
    );
    assert!(
        server
            .log_text()
            .contains("did not finish within the shutdown grace")
    );
    drop(stream);
}

#[tokio::test]
async fn ctrl_c_stops_an_idle_server_with_exit_0() {
    install_drivers();
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), database.url(), &[], &[]).await;
    server.signal(libc::SIGINT);
    let status = server.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "exit status {status}: {}",
        server.log_text()
    );
}
