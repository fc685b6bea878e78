//! Keys and roles: 401 without a usable key, 403 without the role or the ownership, public catalogue
//! reads, and local mode (no keys: loopback callers only, all roles; refuses to bind openly).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::Request;
use common::{
    ADMIN_KEY, ALICE_KEY, BOB_KEY, CAROL_KEY, DAVE_KEY, TestApp, TestDatabase, test_config,
};
use gpu_market::server::App;
use serde_json::{Value, json};
use tower::ServiceExt;

const WRONG_KEY: &str = "not-a-configured-key";

fn gpu() -> Value {
    json!({ "name": "RTX 4090", "memory_gb": 24, "price_per_hour": 0.5 })
}

/// A market run with keys: bob's GPU, booked by alice.
async fn keyed_market() -> (TestApp, String) {
    let app = TestApp::spawn_with_keys().await;
    let gpu_id = app.register_as(gpu(), BOB_KEY, "default").await;
    app.book_as(&gpu_id, 1.0, ALICE_KEY).await;
    (app, gpu_id)
}

/// Every protected endpoint, as (method, path, body).
fn protected_requests(gpu_id: &str) -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        (
            "POST",
            "/v1/marketplace/gpu/register".into(),
            Some(json!({ "gpu": gpu() })),
        ),
        (
            "POST",
            format!("/v1/marketplace/gpu/{gpu_id}/book"),
            Some(json!({ "gpu_id": gpu_id, "duration_hours": 1 })),
        ),
        (
            "POST",
            format!("/v1/marketplace/gpu/{gpu_id}/release"),
            None,
        ),
        (
            "POST",
            format!("/v1/marketplace/gpu/{gpu_id}/heartbeat"),
            None,
        ),
        ("DELETE", format!("/v1/marketplace/gpu/{gpu_id}"), None),
        (
            "POST",
            format!("/v1/marketplace/gpu/{gpu_id}/reviews"),
            Some(json!({ "rating": 5, "comment": null })),
        ),
        ("GET", "/v1/marketplace/orders".into(), None),
        (
            "POST",
            "/v1/marketplace/bids".into(),
            Some(json!({ "provider": "p", "capacity": 1, "price": 1.0 })),
        ),
        ("POST", "/v1/marketplace/sync-offers".into(), None),
        ("GET", "/v1/admin/reviews?status=flagged".into(), None),
    ]
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    body: &Option<Value>,
    key: Option<&str>,
) -> common::Reply {
    let mut request = match method {
        "GET" => app.client.get(app.url(path)),
        "POST" => app.client.post(app.url(path)),
        "DELETE" => app.client.delete(app.url(path)),
        other => panic!("method {other}"),
    };
    if let Some(key) = key {
        request = request.header("X-Api-Key", key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    app.send(request).await
}

async fn assert_every_protected_endpoint(key: Option<&str>, status: u16) {
    let (app, gpu_id) = keyed_market().await;
    let before = app.snapshot().await;
    for (method, path, body) in protected_requests(&gpu_id) {
        let reply = send(&app, method, &path, &body, key).await;
        assert_eq!(
            reply.status, status,
            "{method} {path} with key {key:?}: {}",
            reply.text
        );
        common::assert_detail(&reply);
    }
    assert!(
        before == app.snapshot().await,
        "refused requests changed the database"
    );
}

#[tokio::test]
async fn protected_endpoints_are_401_without_a_key() {
    assert_every_protected_endpoint(None, 401).await;
}

#[tokio::test]
async fn an_empty_key_counts_as_no_key() {
    assert_every_protected_endpoint(Some(""), 401).await;
}

#[tokio::test]
async fn protected_endpoints_are_401_with_a_wrong_key() {
    assert_every_protected_endpoint(Some(WRONG_KEY), 401).await;
}

#[tokio::test]
async fn catalogue_reads_need_no_key() {
    let (app, gpu_id) = keyed_market().await;
    for path in [
        "/v1/marketplace/gpu/list?limit=20".to_owned(),
        format!("/v1/marketplace/gpu/{gpu_id}"),
        format!("/v1/marketplace/gpu/{gpu_id}/reviews?limit=10"),
        "/v1/marketplace/pricing/RTX4090".to_owned(),
        "/v1/marketplace/offers".to_owned(),
        "/v1/marketplace/stats".to_owned(),
        "/health".to_owned(),
        "/v1/health".to_owned(),
    ] {
        for key in [None, Some("")] {
            let reply = send(&app, "GET", &path, &None, key).await;
            assert_eq!(
                reply.status, 200,
                "GET {path} with key {key:?}: {}",
                reply.text
            );
        }
    }
}

#[tokio::test]
async fn a_client_cannot_release_another_clients_booking() {
    let (app, gpu_id) = keyed_market().await;
    let before = app.snapshot().await;
    app.release_raw_as(&gpu_id, CAROL_KEY)
        .await
        .expect_error(403);
    assert!(before == app.snapshot().await);
    assert_eq!(app.details(&gpu_id).await["status"], "booked");
    app.release_raw_as(&gpu_id, ALICE_KEY).await.expect(200);
}

#[tokio::test]
async fn a_client_cannot_register_a_gpu() {
    let app = TestApp::spawn_with_keys().await;
    app.register_raw_as(gpu(), ALICE_KEY, "default")
        .await
        .expect_error(403);
    assert_eq!(app.count("SELECT COUNT(*) FROM gpus").await, 0);
}

#[tokio::test]
async fn a_miner_registers_under_its_own_principal() {
    let app = TestApp::spawn_with_keys().await;
    let gpu_id = app.register_as(gpu(), BOB_KEY, "default").await;
    assert_eq!(app.details(&gpu_id).await["miner_id"], "bob");
}

#[tokio::test]
async fn an_admin_registers_for_the_miner_named_in_x_miner_id() {
    let app = TestApp::spawn_with_keys().await;
    let gpu_id = app.register_as(gpu(), ADMIN_KEY, "bob").await;
    assert_eq!(app.details(&gpu_id).await["miner_id"], "bob");
    // ... and that miner owns it.
    app.delete_as(&format!("/v1/marketplace/gpu/{gpu_id}"), BOB_KEY)
        .await
        .expect(200);
}

#[tokio::test]
async fn a_miner_cannot_delete_another_miners_gpu() {
    let app = TestApp::spawn_with_keys().await;
    let gpu_id = app.register_as(gpu(), BOB_KEY, "default").await;
    app.delete_as(&format!("/v1/marketplace/gpu/{gpu_id}"), DAVE_KEY)
        .await
        .expect_error(403);
    app.details(&gpu_id).await;
    app.delete_as(&format!("/v1/marketplace/gpu/{gpu_id}"), BOB_KEY)
        .await
        .expect(200);
}

#[tokio::test]
async fn an_admin_can_delete_any_gpu() {
    let app = TestApp::spawn_with_keys().await;
    let gpu_id = app.register_as(gpu(), BOB_KEY, "default").await;
    app.delete_as(&format!("/v1/marketplace/gpu/{gpu_id}"), ADMIN_KEY)
        .await
        .expect(200);
}

#[tokio::test]
async fn only_the_gpus_miner_sends_its_heartbeat() {
    let app = TestApp::spawn_with_keys().await;
    let gpu_id = app.register_as(gpu(), BOB_KEY, "default").await;
    let path = format!("/v1/marketplace/gpu/{gpu_id}/heartbeat");
    app.post_empty_as(&path, DAVE_KEY).await.expect_error(403);
    app.post_empty_as(&path, ALICE_KEY).await.expect_error(403);
    assert!(app.details(&gpu_id).await["last_heartbeat"].is_null());
    app.post_empty_as(&path, BOB_KEY).await.expect(200);
}

#[tokio::test]
async fn a_miner_without_the_client_role_cannot_book() {
    let app = TestApp::spawn_with_keys().await;
    let gpu_id = app.register_as(gpu(), BOB_KEY, "default").await;
    app.book_raw_as(&gpu_id, 1.0, DAVE_KEY)
        .await
        .expect_error(403);
    assert_eq!(app.count("SELECT COUNT(*) FROM bookings").await, 0);
}

#[tokio::test]
async fn a_client_cannot_sync_offers() {
    let app = TestApp::spawn_with_keys().await;
    app.post_empty_as("/v1/marketplace/sync-offers", ALICE_KEY)
        .await
        .expect_error(403);
    app.post_empty_as("/v1/marketplace/sync-offers", ADMIN_KEY)
        .await
        .expect(200);
}

#[tokio::test]
async fn admin_endpoints_are_403_for_clients_and_miners() {
    let app = TestApp::spawn_with_keys().await;
    for key in [ALICE_KEY, BOB_KEY] {
        app.get_as("/v1/admin/reviews?status=flagged", key)
            .await
            .expect_error(403);
    }
    app.get_as("/v1/admin/reviews?status=flagged", ADMIN_KEY)
        .await
        .expect(200);
}

#[tokio::test]
async fn a_review_is_written_under_the_key_principal() {
    let (app, gpu_id) = keyed_market().await;
    let body = json!({ "rating": 4, "comment": "good" });
    app.post_as(
        &format!("/v1/marketplace/gpu/{gpu_id}/reviews"),
        &body,
        ALICE_KEY,
    )
    .await
    .expect(201);
    let reviews = app
        .get(&format!("/v1/marketplace/gpu/{gpu_id}/reviews"))
        .await
        .expect(200)
        .clone();
    assert_eq!(reviews["reviews"][0]["user"], "alice");
}

// ---- local mode, in process: the peer address is whatever MockConnectInfo says ------------------

async fn call_in_process(
    keys: bool,
    peer: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    common::install_drivers();
    let database = TestDatabase::create().await;
    let policies = tempfile::tempdir().unwrap();
    let mut config = test_config(database.url(), policies.path().to_owned());
    if keys {
        config.keys = common::test_keys();
    }
    let app = App::build(config).await.expect("app builds");
    let router = app.router().layer(MockConnectInfo(peer));

    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = router.oneshot(request).await.expect("router answers");
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body)
}

fn register_body() -> Option<Value> {
    Some(json!({ "gpu": gpu() }))
}

const CLIENT_HEADERS: &[(&str, &str)] = &[("X-Api-Key", ""), ("X-Miner-ID", "default")];

#[tokio::test]
async fn local_mode_refuses_a_non_loopback_peer() {
    let remote: SocketAddr = "10.1.2.3:40000".parse().unwrap();
    let (status, body) = call_in_process(
        false,
        remote,
        "POST",
        "/v1/marketplace/gpu/register",
        CLIENT_HEADERS,
        register_body(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].is_string(), "{body}");
    let (status, body) = call_in_process(
        false,
        remote,
        "GET",
        "/v1/marketplace/gpu/list",
        CLIENT_HEADERS,
        None,
    )
    .await;
    assert_eq!(
        status, 403,
        "local mode serves loopback callers only, reads included: {body}"
    );
}

#[tokio::test]
async fn local_mode_accepts_ipv4_and_ipv6_loopback_peers() {
    for peer in ["127.0.0.1:40000", "[::1]:40000"] {
        let peer: SocketAddr = peer.parse().unwrap();
        let (status, body) = call_in_process(
            false,
            peer,
            "POST",
            "/v1/marketplace/gpu/register",
            CLIENT_HEADERS,
            register_body(),
        )
        .await;
        assert_eq!(status, 201, "{peer}: {body}");
    }
}

#[tokio::test]
async fn with_keys_a_non_loopback_peer_is_served() {
    let remote: SocketAddr = "10.1.2.3:40000".parse().unwrap();
    let headers = &[("X-Api-Key", BOB_KEY), ("X-Miner-ID", "default")];
    let (status, body) = call_in_process(
        true,
        remote,
        "POST",
        "/v1/marketplace/gpu/register",
        headers,
        register_body(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) =
        call_in_process(true, remote, "GET", "/v1/marketplace/gpu/list", &[], None).await;
    assert_eq!(status, 200, "{body}");
}

// ---- configuration --------------------------------------------------------------------------------

fn open_config() -> gpu_market::config::Config {
    gpu_market::config::Config {
        bind: "0.0.0.0:0".parse().unwrap(),
        ..Default::default()
    }
}

#[test]
fn binding_openly_without_keys_is_refused() {
    assert!(open_config().validate().is_err());
}

#[test]
fn binding_openly_without_keys_is_allowed_when_explicitly_opted_in() {
    let mut config = open_config();
    config.allow_open_access = true;
    assert!(config.validate().is_ok());
}

#[test]
fn binding_openly_with_keys_is_allowed() {
    let mut config = open_config();
    config.keys = common::test_keys();
    assert!(config.validate().is_ok());
}

#[tokio::test]
async fn the_server_does_not_start_bound_openly_without_keys() {
    common::install_drivers();
    let database = TestDatabase::create().await;
    let policies = tempfile::tempdir().unwrap();
    let mut config = test_config(database.url(), policies.path().to_owned());
    config.bind = "0.0.0.0:0".parse().unwrap();
    assert!(gpu_market::server::spawn(config).await.is_err());
}

#[test]
fn the_binary_exits_with_an_error_when_bound_openly_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("db.sqlite").display()
    );
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-market"))
        .current_dir(dir.path())
        .args([
            "serve",
            "--bind",
            "0.0.0.0:0",
            "--database-url",
            &database_url,
            "--policies",
        ])
        .arg(&policies)
        .env_remove("GPU_MARKET_DATABASE_URL")
        .env_remove("GPU_MARKET_BIND")
        .env_remove("GPU_MARKET_POLICIES_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the gpu-market binary starts");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gpu-market kept running on 0.0.0.0 without keys");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    use std::io::Read;
    let mut output = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    assert!(!status.success(), "exit status {status}");
    assert!(
        output.contains("bind"),
        "the message names the key: {output}"
    );
}
