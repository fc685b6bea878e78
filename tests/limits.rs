//! Issue 12, limits: token buckets on writes per key (per address without one) answering 429 with
//! `Retry-After`, a deadline per request and a global cap on requests in flight, both 503 JSON.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

fn gpu(name: &str) -> serde_json::Value {
    json!({ "name": name, "memory_gb": 24, "price_per_hour": 0.5 })
}

#[tokio::test]
async fn writes_beyond_the_burst_get_429_with_retry_after_per_key() {
    let app = TestApp::spawn_with(|config| {
        config.keys = test_keys();
        config.rate_limit.writes_per_second = 0.5;
        config.rate_limit.write_burst = 3;
    })
    .await;
    for i in 0..3 {
        app.register_as(gpu(&format!("A{i}")), BOB_KEY, "bob").await;
    }
    let before = app.snapshot().await;
    let reply = app.register_raw_as(gpu("A3"), BOB_KEY, "bob").await;
    reply.expect_error(429);
    let retry_after: u64 = reply
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(
        app.snapshot().await,
        before,
        "a refused write changes nothing"
    );

    // Reads are not limited; another key has its own bucket.
    app.get_as("/v1/marketplace/gpu/list", BOB_KEY)
        .await
        .expect(200);
    app.register_as(gpu("D0"), DAVE_KEY, "dave").await;

    // After Retry-After there is a token again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    app.register_as(gpu("A4"), BOB_KEY, "bob").await;
}

#[tokio::test]
async fn callers_without_a_valid_key_are_limited_per_address() {
    let app = TestApp::spawn_with(|config| {
        config.keys = test_keys();
        config.rate_limit.writes_per_second = 0.01;
        config.rate_limit.write_burst = 2;
    })
    .await;
    for _ in 0..2 {
        app.register_raw_as(gpu("X"), "not-a-key", "x")
            .await
            .expect_error(401);
    }
    let reply = app.register_raw_as(gpu("X"), "", "x").await;
    reply.expect_error(429);
    assert!(reply.headers.contains_key("retry-after"));
    // A valid key is counted on its own bucket, not on the address's.
    app.register_as(gpu("B"), BOB_KEY, "bob").await;
}

#[tokio::test]
async fn local_mode_is_not_rate_limited() {
    let app = TestApp::spawn_with(|config| {
        config.rate_limit.writes_per_second = 0.01;
        config.rate_limit.write_burst = 1;
    })
    .await;
    for i in 0..4 {
        app.register_gpu(&format!("L{i}"), 0.5).await;
    }
}

#[tokio::test]
async fn a_request_over_the_deadline_gets_503_json() {
    let app = TestApp::spawn_with(|config| config.server.request_timeout_ms = 300).await;
    let body = serde_json::to_vec(&json!({ "gpu": gpu("slow") })).unwrap();
    // The body never completes, so the handler cannot finish.
    let stream = partial_request(
        app.addr,
        "POST",
        "/v1/marketplace/gpu/register",
        &[("X-Api-Key", "")],
        &body,
        5,
    )
    .await;
    let reply = read_raw_reply(stream).await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert!(
        reply.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("time limit"))
    );
    assert!(reply.headers.contains_key("retry-after"));
    assert_eq!(app.count("SELECT COUNT(*) FROM gpus").await, 0);
    // Requests within the deadline are served as before.
    app.register_gpu("fast", 0.5).await;
}

#[tokio::test]
async fn requests_beyond_the_concurrency_cap_get_503_at_once() {
    let app = TestApp::spawn_with(|config| config.server.max_concurrent_requests = 2).await;
    let body = serde_json::to_vec(&json!({ "gpu": gpu("held") })).unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            partial_request(
                app.addr,
                "POST",
                "/v1/marketplace/gpu/register",
                &[("X-Api-Key", "")],
                &body,
                5,
            )
            .await,
        );
    }
    // Both slots are taken once the server has read the two heads.
    let reply = eventually(
        Duration::from_secs(10),
        "a 503 from the full server",
        || async {
            let reply = app.get("/v1/marketplace/gpu/list").await;
            (reply.status == 503).then_some(reply)
        },
    )
    .await;
    reply.expect_error(503);
    assert_eq!(
        reply
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // The held requests complete normally, and then there is room again.
    for stream in held {
        let reply = finish_request(stream, &body[5..]).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
    app.get("/v1/marketplace/gpu/list").await.expect(200);
    assert_eq!(app.count("SELECT COUNT(*) FROM gpus").await, 2);
}
