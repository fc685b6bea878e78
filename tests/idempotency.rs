//! Issue 12, idempotent writes: `Idempotency-Key` on book, release, register and review. A retry with
//! the same key and body gets the first answer; another body with the same key gets 422; two at once
//! run once; keys belong to their caller and expire. On SQLite, and on PostgreSQL when
//! `GPU_MARKET_TEST_POSTGRES_URL` is set.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

async fn post_keyed(app: &TestApp, path: &str, body: &str, key: &str, idem: &str) -> Reply {
    app.send(
        app.client
            .post(app.url(path))
            .header("X-Api-Key", key)
            .header("X-Miner-ID", "bob")
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", idem)
            .body(body.to_owned()),
    )
    .await
}

fn book_path(gpu: &str) -> String {
    format!("/v1/marketplace/gpu/{gpu}/book")
}

async fn keyed_app() -> (TestApp, String) {
    let app = TestApp::spawn_with_keys().await;
    let gpu = app
        .register_as(
            json!({ "name": "RTX 4090", "memory_gb": 24, "price_per_hour": 0.5 }),
            BOB_KEY,
            "bob",
        )
        .await;
    (app, gpu)
}

fn replayed(reply: &Reply) -> bool {
    reply
        .headers
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

#[tokio::test]
async fn a_retried_booking_gets_the_first_answer_and_books_once() {
    let (app, gpu) = keyed_app().await;
    let path = book_path(&gpu);
    let body = r#"{"duration_hours": 2}"#;
    let first = post_keyed(&app, &path, body, ALICE_KEY, "book-1").await;
    first.expect(201);
    assert!(!replayed(&first));
    // Same key, same body (spacing aside): the same answer, no second booking (which would be 409).
    let again = post_keyed(
        &app,
        &path,
        r#"{ "duration_hours" : 2 }"#,
        ALICE_KEY,
        "book-1",
    )
    .await;
    again.expect(201);
    assert!(replayed(&again));
    assert_eq!(again.body, first.body);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM bookings").await,
        1,
        "one booking"
    );

    // Same key, another body: 422, nothing changes.
    let before = app.snapshot().await;
    let other = post_keyed(&app, &path, r#"{"duration_hours": 3}"#, ALICE_KEY, "book-1").await;
    other.expect_error(422);
    assert_eq!(app.snapshot().await, before);

    // Without a key the contract is unchanged: the GPU is booked, so 409.
    app.book_raw_as(&gpu, 1.0, CAROL_KEY)
        .await
        .expect_error(409);
}

#[tokio::test]
async fn keys_belong_to_their_caller() {
    let (app, gpu) = keyed_app().await;
    let path = book_path(&gpu);
    let body = r#"{"duration_hours": 1}"#;
    post_keyed(&app, &path, body, ALICE_KEY, "shared")
        .await
        .expect(201);
    // Carol's "shared" is her own key: her booking runs (and meets the GPU booked).
    let carol = post_keyed(&app, &path, body, CAROL_KEY, "shared").await;
    carol.expect_error(409);
    assert!(!replayed(&carol));
}

#[tokio::test]
async fn release_register_and_review_replay_too() {
    let (app, gpu) = keyed_app().await;
    app.book_as(&gpu, 1.0, ALICE_KEY).await;
    let release = format!("/v1/marketplace/gpu/{gpu}/release");
    let first = post_keyed(&app, &release, "", ALICE_KEY, "rel-1").await;
    first.expect(200);
    let again = post_keyed(&app, &release, "", ALICE_KEY, "rel-1").await;
    again.expect(200);
    assert!(replayed(&again));
    assert_eq!(again.body, first.body);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM bookings WHERE refund_micro IS NOT NULL")
            .await,
        1
    );

    let register = "/v1/marketplace/gpu/register";
    let gpu_body = r#"{"gpu": {"name": "A100", "memory_gb": 80, "price_per_hour": 2}}"#;
    let first = post_keyed(&app, register, gpu_body, BOB_KEY, "reg-1").await;
    first.expect(201);
    let again = post_keyed(&app, register, gpu_body, BOB_KEY, "reg-1").await;
    assert_eq!(again.expect(201), first.expect(201));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM gpus WHERE model = 'A100'")
            .await,
        1
    );
    // The same key on another endpoint is another request.
    post_keyed(&app, &release, "", BOB_KEY, "reg-1")
        .await
        .expect_error(422);

    let reviews = format!("/v1/marketplace/gpu/{gpu}/reviews");
    let review = r#"{"rating": 5, "comment": "fast"}"#;
    let first = post_keyed(&app, &reviews, review, ALICE_KEY, "rev-1").await;
    assert!(first.status < 300, "{}", first.text);
    let again = post_keyed(&app, &reviews, review, ALICE_KEY, "rev-1").await;
    assert_eq!(again.status, first.status);
    assert_eq!(again.body, first.body);
    assert_eq!(app.count("SELECT COUNT(*) FROM reviews").await, 1);
}

#[tokio::test]
async fn simultaneous_requests_with_one_key_run_once() {
    let (app, gpu) = keyed_app().await;
    let path = book_path(&gpu);
    let body = r#"{"duration_hours": 1}"#;
    let replies = join_all(
        (0..8)
            .map(|_| post_keyed(&app, &path, body, ALICE_KEY, "race"))
            .collect(),
    )
    .await;
    let first = &replies[0];
    for reply in &replies {
        // Each waits for the one that claimed the key and gets its answer.
        reply.expect(201);
        assert_eq!(reply.body, first.body);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM bookings").await, 1);
}

/// Polls all together, so every request is sent before any answer is awaited.
async fn join_all<F: std::future::Future<Output = Reply>>(futures: Vec<F>) -> Vec<Reply> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<Reply>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, slot) in pinned.iter_mut().zip(results.iter_mut()) {
            if slot.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(reply) => *slot = Some(reply),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().flatten().collect()
}

#[tokio::test]
async fn keys_expire_after_their_ttl() {
    let app = TestApp::spawn_with(|config| {
        config.keys = test_keys();
        config.server.idempotency_ttl_seconds = 1;
    })
    .await;
    let register = "/v1/marketplace/gpu/register";
    let one = r#"{"gpu": {"name": "T4", "memory_gb": 16, "price_per_hour": 0.2}}"#;
    let two = r#"{"gpu": {"name": "L4", "memory_gb": 24, "price_per_hour": 0.4}}"#;
    post_keyed(&app, register, one, BOB_KEY, "k")
        .await
        .expect(201);
    post_keyed(&app, register, two, BOB_KEY, "k")
        .await
        .expect_error(422);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // Expired: the key is free for a new request.
    let reply = post_keyed(&app, register, two, BOB_KEY, "k").await;
    reply.expect(201);
    assert!(!replayed(&reply));
    assert_eq!(app.count("SELECT COUNT(*) FROM gpus").await, 2);
}

#[tokio::test]
async fn malformed_keys_are_400_and_local_mode_works_too() {
    let app = TestApp::spawn().await;
    let gpu = app.register_gpu("RTX 3090", 0.3).await;
    let path = book_path(&gpu);
    let body = r#"{"duration_hours": 1}"#;
    post_keyed(&app, &path, body, "", &"x".repeat(300))
        .await
        .expect_error(400);
    let first = post_keyed(&app, &path, body, "", "local-1").await;
    first.expect(201);
    let again = post_keyed(&app, &path, body, "", "local-1").await;
    assert_eq!(again.expect(201), first.expect(201));
    assert_eq!(app.count("SELECT COUNT(*) FROM bookings").await, 1);
}
