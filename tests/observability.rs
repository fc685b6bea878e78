//! What operators look at: health, Prometheus metrics, request ids and the OpenAPI document.

mod common;

use common::TestApp;
use serde_json::Value;

#[tokio::test]
async fn health_answers_ok_at_the_root_and_under_v1() {
    let app = TestApp::spawn().await;
    for path in ["/health", "/v1/health"] {
        let reply = app.get(path).await;
        assert_eq!(reply.expect(200)["status"], "ok", "{path}: {}", reply.text);
    }
}

async fn metrics_text(app: &TestApp) -> String {
    let reply = app.get("/metrics").await;
    reply.expect(200);
    let content_type = reply
        .headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain")
            || content_type.starts_with("application/openmetrics-text"),
        "Prometheus text content type, got {content_type:?}"
    );
    reply.text
}

/// Metric lines (not comments) that contain every one of `needles`.
fn lines_with<'a>(text: &'a str, needles: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && needles.iter().all(|n| l.contains(n)))
        .collect()
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    for _ in 0..3 {
        app.get("/v1/marketplace/gpu/list").await.expect(200);
    }
    app.details(&gpu_id).await;

    let text = metrics_text(&app).await;
    assert!(
        !lines_with(&text, &["/v1/marketplace/gpu/list"]).is_empty(),
        "a series labelled with the list route:\n{text}"
    );
    assert!(
        !lines_with(&text, &["/v1/marketplace/gpu/{id}"]).is_empty(),
        "details are labelled by the route template:\n{text}"
    );
    assert!(
        !text.contains(&gpu_id),
        "no per-id label values (unbounded cardinality):\n{text}"
    );
}

#[tokio::test]
async fn metrics_have_latency_histograms_by_route() {
    let app = TestApp::spawn().await;
    app.get("/v1/marketplace/gpu/list").await.expect(200);
    let text = metrics_text(&app).await;
    let buckets = lines_with(&text, &["_bucket{", "/v1/marketplace/gpu/list", "le="]);
    assert!(
        !buckets.is_empty(),
        "histogram buckets for the list route:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("_count") && l.contains("/v1/marketplace/gpu/list")),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_show_gpus_by_status_and_active_bookings() {
    let app = TestApp::spawn().await;
    let a = app.register_gpu("RTX 4090", 0.5).await;
    app.register_gpu("RTX 4090", 0.5).await;
    app.book(&a, 1.0).await;

    let text = metrics_text(&app).await;
    let booked = lines_with(&text, &["gpu", "status=\"booked\""]);
    assert!(
        booked.iter().any(|l| l.trim_end().ends_with(" 1")),
        "a GPU gauge with status=\"booked\" at 1:\n{text}"
    );
    let available = lines_with(&text, &["gpu", "status=\"available\""]);
    assert!(
        available.iter().any(|l| l.trim_end().ends_with(" 1")),
        "available GPUs at 1:\n{text}"
    );
    let active = lines_with(&text, &["active", "booking"]);
    assert!(
        active.iter().any(|l| l.trim_end().ends_with(" 1")),
        "active bookings at 1:\n{text}"
    );
}

/// The value of the metric line that starts with `name` (no labels).
fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test]
async fn metrics_count_sqlite_group_commits_and_their_writes() {
    let app = TestApp::spawn().await;
    if app.is_postgres() {
        return; // PostgreSQL has no write queue of ours to count.
    }
    let a = app.register_gpu("RTX 4090", 0.5).await;
    app.register_gpu("RTX 4090", 0.5).await;
    app.book(&a, 1.0).await;

    let text = metrics_text(&app).await;
    let commits = metric_value(&text, "gpu_market_db_commits").expect("a commit gauge");
    let writes = metric_value(&text, "gpu_market_db_writes_committed").expect("a write gauge");
    assert!(
        writes >= 3.0,
        "two registrations and a booking at least:\n{text}"
    );
    assert!(
        (1.0..=writes).contains(&commits),
        "commits between 1 and the writes they hold:\n{text}"
    );
    assert!(
        metric_value(&text, "gpu_market_db_wal_pages").is_some(),
        "the write-ahead log's size:\n{text}"
    );
    assert_eq!(
        metric_value(&text, "gpu_market_db_checkpoint_failures"),
        Some(0.0),
        "{text}"
    );
}

#[tokio::test]
async fn a_given_request_id_is_echoed() {
    let app = TestApp::spawn().await;
    let reply = app
        .send(
            app.client
                .get(app.url("/v1/marketplace/gpu/list"))
                .header("X-Request-ID", "trace-me-123"),
        )
        .await;
    reply.expect(200);
    assert_eq!(
        reply
            .headers
            .get("x-request-id")
            .map(|v| v.to_str().unwrap()),
        Some("trace-me-123")
    );
}

#[tokio::test]
async fn a_request_id_is_generated_when_absent() {
    let app = TestApp::spawn().await;
    let first = app.get("/health").await;
    let second = app.get("/health").await;
    let id = |reply: &common::Reply| {
        reply
            .headers
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned())
            .expect("x-request-id header")
    };
    let (a, b) = (id(&first), id(&second));
    assert!(!a.is_empty());
    assert_ne!(a, b, "each request gets its own id");
}

#[tokio::test]
async fn errors_carry_a_request_id_too() {
    let app = TestApp::spawn().await;
    let reply = app
        .get("/v1/marketplace/gpu/gpu_00000000000000000000000000000000")
        .await;
    reply.expect_error(404);
    assert!(reply.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn openapi_document_describes_the_marketplace() {
    let app = TestApp::spawn().await;
    let reply = app.get("/openapi.json").await;
    let doc: Value = reply.expect(200).clone();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')),
        "an OpenAPI 3 document"
    );
    let paths = doc["paths"].as_object().expect("paths object");
    for path in [
        "/v1/marketplace/gpu/register",
        "/v1/marketplace/gpu/list",
        "/v1/marketplace/gpu/{id}",
        "/v1/marketplace/gpu/{id}/book",
        "/v1/marketplace/gpu/{id}/release",
        "/v1/marketplace/gpu/{id}/reviews",
        "/v1/marketplace/orders",
        "/v1/marketplace/pricing/{model}",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} documented; paths: {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn a_human_docs_page_is_served() {
    let app = TestApp::spawn().await;
    let reply = app.get("/docs").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let content_type = reply
        .headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("text/html")),
        "{content_type:?}"
    );
    assert!(
        reply.text.contains("openapi.json"),
        "the page is built from the OpenAPI document"
    );
}
