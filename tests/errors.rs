//! The error conventions of the contract: each bad input gets its status code and a JSON `detail`, and
//! the database is exactly as it was before the request.

mod common;

use common::{Reply, TestApp};
use serde_json::{Value, json};

/// A market with some state: two GPUs, one of them booked, one review.
async fn market() -> (TestApp, String, String) {
    let app = TestApp::spawn_with(|config| config.max_body_bytes = 4096).await;
    let free = app.register_gpu("RTX 4090", 0.5).await;
    let booked = app.register_gpu("A100", 2.0).await;
    app.book(&booked, 10.0).await;
    app.review(&free, json!(4), json!("fine")).await.expect(201);
    (app, free, booked)
}

/// Sends `request`, checks status and `detail`, and that nothing in the database moved.
async fn assert_rejected(
    app: &TestApp,
    status: u16,
    what: &str,
    request: impl std::future::Future<Output = Reply>,
) {
    let before = app.snapshot().await;
    let reply = request.await;
    assert_eq!(reply.status, status, "{what}: body {}", reply.text);
    common::assert_detail(&reply);
    let after = app.snapshot().await;
    assert!(
        before == after,
        "{what}: the database changed\nbefore: {before:?}\nafter: {after:?}"
    );
}

const UNKNOWN: &str = "gpu_00000000000000000000000000000000";

#[tokio::test]
async fn malformed_json_is_400_and_changes_nothing() {
    let (app, free, _) = market().await;
    let cases: Vec<(String, &str)> = vec![
        (
            "/v1/marketplace/gpu/register".into(),
            "{\"gpu\": {\"name\": \"X\",",
        ),
        ("/v1/marketplace/gpu/register".into(), "not json"),
        (
            format!("/v1/marketplace/gpu/{free}/book"),
            "{\"duration_hours\": 1,,}",
        ),
        (
            format!("/v1/marketplace/gpu/{free}/reviews"),
            "{\"rating\": 5",
        ),
        ("/v1/marketplace/bids".into(), "{\"provider\": "),
    ];
    for (path, body) in cases {
        assert_rejected(
            &app,
            400,
            &format!("POST {path} {body}"),
            app.post_raw(&path, body.to_owned()),
        )
        .await;
    }
}

#[tokio::test]
async fn missing_fields_are_422_and_change_nothing() {
    let (app, free, _) = market().await;
    let cases: Vec<(String, Value)> = vec![
        ("/v1/marketplace/gpu/register".into(), json!({})),
        ("/v1/marketplace/gpu/register".into(), json!({ "gpu": {} })),
        (
            "/v1/marketplace/gpu/register".into(),
            json!({ "gpu": { "memory_gb": 24, "price_per_hour": 1 } }),
        ),
        (
            format!("/v1/marketplace/gpu/{free}/book"),
            json!({ "gpu_id": free }),
        ),
        (
            format!("/v1/marketplace/gpu/{free}/reviews"),
            json!({ "comment": "no rating" }),
        ),
    ];
    for (path, body) in cases {
        assert_rejected(
            &app,
            422,
            &format!("POST {path} {body}"),
            app.post_raw(&path, body.to_string()),
        )
        .await;
    }
}

#[tokio::test]
async fn mistyped_fields_are_422_and_change_nothing() {
    let (app, free, _) = market().await;
    let register = "/v1/marketplace/gpu/register".to_owned();
    let cases: Vec<(String, Value)> = vec![
        (
            register.clone(),
            json!({ "gpu": { "name": 4090, "price_per_hour": 1 } }),
        ),
        (
            register.clone(),
            json!({ "gpu": { "name": "X", "memory_gb": "lots", "price_per_hour": 1 } }),
        ),
        (
            register.clone(),
            json!({ "gpu": { "name": "X", "price_per_hour": "cheap" } }),
        ),
        (
            register.clone(),
            json!({ "gpu": { "name": "X", "price_per_hour": 1, "cuda_cores": "many" } }),
        ),
        (
            register.clone(),
            json!({ "gpu": { "name": "X", "price_per_hour": 1, "capabilities": "llm" } }),
        ),
        (register.clone(), json!({ "gpu": "RTX 4090" })),
        (
            format!("/v1/marketplace/gpu/{free}/book"),
            json!({ "gpu_id": free, "duration_hours": "2" }),
        ),
        (
            format!("/v1/marketplace/gpu/{free}/reviews"),
            json!({ "rating": "five", "comment": null }),
        ),
        (
            format!("/v1/marketplace/gpu/{free}/reviews"),
            json!({ "rating": 4.5, "comment": null }),
        ),
        (
            format!("/v1/marketplace/gpu/{free}/reviews"),
            json!({ "rating": 6, "comment": null }),
        ),
    ];
    for (path, body) in cases {
        assert_rejected(
            &app,
            422,
            &format!("POST {path} {body}"),
            app.post_raw(&path, body.to_string()),
        )
        .await;
    }
}

#[tokio::test]
async fn values_out_of_range_are_400_and_change_nothing() {
    let (app, free, _) = market().await;
    let register = "/v1/marketplace/gpu/register".to_owned();
    let long_name = "x".repeat(129);
    let cases: Vec<(String, Value)> = vec![
        (
            register.clone(),
            json!({ "gpu": { "name": "", "price_per_hour": 1 } }),
        ),
        (
            register.clone(),
            json!({ "gpu": { "name": long_name, "price_per_hour": 1 } }),
        ),
        (
            register.clone(),
            json!({ "gpu": { "name": "X", "memory_gb": -1, "price_per_hour": 1 } }),
        ),
        (
            register.clone(),
            json!({ "gpu": { "name": "X", "memory_gb": 4097, "price_per_hour": 1 } }),
        ),
        (
            register.clone(),
            json!({ "gpu": { "name": "X", "price_per_hour": 0 } }),
        ),
        (
            register.clone(),
            json!({ "gpu": { "name": "X", "price_per_hour": -2 } }),
        ),
        (
            register.clone(),
            json!({ "gpu": { "name": "X", "price_per_hour": 10000.01 } }),
        ),
        (
            register.clone(),
            json!({ "gpu": { "name": "Never Seen Before" } }),
        ),
        (
            format!("/v1/marketplace/gpu/{free}/book"),
            json!({ "gpu_id": free, "duration_hours": 0 }),
        ),
        (
            format!("/v1/marketplace/gpu/{free}/book"),
            json!({ "gpu_id": free, "duration_hours": -3 }),
        ),
        (
            format!("/v1/marketplace/gpu/{free}/book"),
            json!({ "gpu_id": free, "duration_hours": 8761 }),
        ),
        (
            format!("/v1/marketplace/gpu/{free}/reviews"),
            json!({ "rating": 3, "comment": "y".repeat(2001) }),
        ),
    ];
    for (path, body) in cases {
        let label = format!(
            "POST {path} {}",
            &body.to_string()[..body.to_string().len().min(120)]
        );
        assert_rejected(&app, 400, &label, app.post_raw(&path, body.to_string())).await;
    }
    for path in [
        "/v1/marketplace/gpu/list?limit=0",
        "/v1/marketplace/gpu/list?limit=501",
        "/v1/marketplace/orders?limit=0",
        &format!("/v1/marketplace/gpu/{free}/reviews?limit=101"),
    ] {
        assert_rejected(&app, 400, &format!("GET {path}"), app.get(path)).await;
    }
}

#[tokio::test]
async fn the_range_bounds_themselves_are_accepted() {
    let app = TestApp::spawn().await;
    let name = "n".repeat(128);
    app.register(json!({ "name": name, "memory_gb": 0, "price_per_hour": 10000 }))
        .await;
    app.register(json!({ "name": "X", "memory_gb": 4096, "price_per_hour": 0.000001 }))
        .await;
}

#[tokio::test]
async fn an_unknown_gpu_is_404_everywhere_and_changes_nothing() {
    let (app, _, _) = market().await;
    let book = json!({ "gpu_id": UNKNOWN, "duration_hours": 1 });
    let review = json!({ "rating": 5, "comment": null });
    assert_rejected(
        &app,
        404,
        "details",
        app.get(&format!("/v1/marketplace/gpu/{UNKNOWN}")),
    )
    .await;
    assert_rejected(
        &app,
        404,
        "book",
        app.post(&format!("/v1/marketplace/gpu/{UNKNOWN}/book"), &book),
    )
    .await;
    assert_rejected(
        &app,
        404,
        "release",
        app.post_empty(&format!("/v1/marketplace/gpu/{UNKNOWN}/release")),
    )
    .await;
    assert_rejected(
        &app,
        404,
        "heartbeat",
        app.post_empty(&format!("/v1/marketplace/gpu/{UNKNOWN}/heartbeat")),
    )
    .await;
    assert_rejected(
        &app,
        404,
        "delete",
        app.delete(&format!("/v1/marketplace/gpu/{UNKNOWN}")),
    )
    .await;
    assert_rejected(
        &app,
        404,
        "reviews",
        app.get(&format!("/v1/marketplace/gpu/{UNKNOWN}/reviews")),
    )
    .await;
    assert_rejected(
        &app,
        404,
        "review",
        app.post(&format!("/v1/marketplace/gpu/{UNKNOWN}/reviews"), &review),
    )
    .await;
    assert_rejected(
        &app,
        404,
        "pricing",
        app.get("/v1/marketplace/pricing/NoSuchModel"),
    )
    .await;
}

#[tokio::test]
async fn conflicts_are_409_and_change_nothing() {
    let (app, _, booked) = market().await;
    let book = json!({ "gpu_id": booked, "duration_hours": 1 });
    assert_rejected(
        &app,
        409,
        "book a booked GPU",
        app.post(&format!("/v1/marketplace/gpu/{booked}/book"), &book),
    )
    .await;
    assert_rejected(
        &app,
        409,
        "delete a booked GPU",
        app.delete(&format!("/v1/marketplace/gpu/{booked}")),
    )
    .await;
}

#[tokio::test]
async fn releasing_an_unbooked_gpu_is_400_and_changes_nothing() {
    let (app, free, _) = market().await;
    assert_rejected(
        &app,
        400,
        "release",
        app.post_empty(&format!("/v1/marketplace/gpu/{free}/release")),
    )
    .await;
}

#[tokio::test]
async fn a_body_over_the_size_limit_is_413_and_changes_nothing() {
    let (app, free, _) = market().await; // max_body_bytes = 4096
    let register =
        json!({ "gpu": { "name": "X", "price_per_hour": 1, "description": "d".repeat(8_000) } });
    assert_rejected(
        &app,
        413,
        "register",
        app.post_raw("/v1/marketplace/gpu/register", register.to_string()),
    )
    .await;
    let review = json!({ "rating": 5, "comment": "c".repeat(5_000) });
    assert_rejected(
        &app,
        413,
        "review",
        app.post_raw(
            &format!("/v1/marketplace/gpu/{free}/reviews"),
            review.to_string(),
        ),
    )
    .await;
}

#[tokio::test]
async fn a_body_just_under_the_size_limit_is_accepted() {
    let app = TestApp::spawn_with(|config| config.max_body_bytes = 2048).await;
    let body = |description: &str| {
        json!({ "gpu": { "name": "X", "price_per_hour": 1, "description": description } })
            .to_string()
    };
    // Pad the description so the whole body is 8 bytes under the limit.
    let padding = 2048 - 8 - body("").len();
    let gpu = body(&"d".repeat(padding));
    assert_eq!(gpu.len(), 2040);
    let reply = app.post_raw("/v1/marketplace/gpu/register", gpu).await;
    reply.expect(201);
}

#[tokio::test]
async fn truncated_json_is_400_even_when_its_start_already_mistypes_a_field() {
    // `[1, 2` is not JSON at all; that serde could already tell the 1 is not a provider name does not
    // make it a schema error.
    let (app, _, _) = market().await;
    let request = app.post_raw("/v1/marketplace/bids", "[1, 2");
    assert_rejected(&app, 400, "POST /v1/marketplace/bids [1, 2", request).await;
}

#[tokio::test]
async fn errors_are_served_as_json() {
    let app = TestApp::spawn().await;
    let reply = app.get(&format!("/v1/marketplace/gpu/{UNKNOWN}")).await;
    reply.expect_error(404);
    let content_type = reply
        .headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/json")),
        "{content_type:?}"
    );
}

#[tokio::test]
async fn an_unknown_path_is_404_with_a_detail() {
    let app = TestApp::spawn().await;
    app.get("/v1/marketplace/nothing-here")
        .await
        .expect_error(404);
}

/// PostgreSQL text cannot hold U+0000: on both backends it becomes U+FFFD on the way in, so the same
/// request is served alike (found by schemathesis on PostgreSQL as a 500).
#[tokio::test]
async fn nul_characters_are_replaced_not_a_server_error() {
    let app = TestApp::spawn().await;
    let listed = app.get("/v1/marketplace/gpu/list?region=eu%00west").await;
    listed.expect(200);
    let registered = app
        .post(
            "/v1/marketplace/gpu/register",
            &json!({ "gpu": { "name": "RTX\u{0}4090", "memory_gb": 24, "price_per_hour": 1.0 } }),
        )
        .await;
    let id = registered.expect(201)["gpu_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let details = app.get(&format!("/v1/marketplace/gpu/{id}")).await;
    assert_eq!(details.expect(200)["model"], "RTX\u{FFFD}4090");
    app.get("/v1/marketplace/gpu/gpu%00x")
        .await
        .expect_error(404);
}
