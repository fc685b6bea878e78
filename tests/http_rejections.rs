//! What the framework rejects on its own (a body over a limit, a malformed path parameter, an
//! unknown route or method) answers the contract's JSON `{"detail": ...}` like every other error,
//! and every response carries `X-Content-Type-Options: nosniff`.

mod common;

use common::{Reply, TestApp, assert_detail};

fn assert_json_error(reply: &Reply, status: u16) {
    assert_eq!(reply.status, status, "{}", reply.text);
    let content_type = reply
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "{status}: content type {content_type:?}, body {}",
        reply.text
    );
    assert_detail(reply);
    assert_nosniff(reply);
}

fn assert_nosniff(reply: &Reply) {
    assert_eq!(
        reply
            .headers
            .get("x-content-type-options")
            .and_then(|v| v.to_str().ok()),
        Some("nosniff"),
        "{} {}",
        reply.status,
        reply.text
    );
}

#[tokio::test]
async fn a_module_over_the_upload_limit_is_a_json_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = TestApp::spawn().await;
    // A body announced one byte over the 64 MiB module limit is refused on its headers alone; the
    // client never has to send it (a raw connection, so nothing races a 64 MiB upload).
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "PUT /v1/admin/policies/pricing HTTP/1.1\r\nHost: {}\r\nX-Api-Key: \r\n\
         Content-Type: application/wasm\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        app.addr,
        (64 << 20) + 1
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    assert!(head.starts_with("HTTP/1.1 413"), "{answer}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("content-type: application/json"), "{head}");
    assert!(lower.contains("x-content-type-options: nosniff"), "{head}");
    // The body may be chunked: its JSON object is between the first `{` and the last `}`.
    let json = &body[body.find('{').unwrap_or(0)..body.rfind('}').map_or(0, |i| i + 1)];
    let value: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {body}"));
    let detail = value["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("64 MiB"), "{value}");
}

#[tokio::test]
async fn a_body_over_the_api_limit_is_a_json_413() {
    let app = TestApp::spawn_with(|config| config.max_body_bytes = 1024).await;
    let reply = app
        .post_raw("/v1/marketplace/gpu/register", "x".repeat(4096))
        .await;
    assert_json_error(&reply, 413);
}

#[tokio::test]
async fn framework_rejections_answer_json() {
    let app = TestApp::spawn().await;
    // A path parameter that is not UTF-8 is rejected by axum's `Path` extractor itself.
    let reply = app.get("/v1/marketplace/gpu/%FF%FE").await;
    assert!(reply.status >= 400 && reply.status < 500, "{}", reply.text);
    assert_json_error(&reply, reply.status);
    assert_json_error(&app.get("/no/such/route").await, 404);
    let reply = app
        .send(
            app.client
                .patch(app.url("/v1/marketplace/gpu/list"))
                .header("X-Api-Key", ""),
        )
        .await;
    assert_json_error(&reply, 405);
    assert_json_error(&app.post_raw("/v1/marketplace/bids", "{").await, 400);
}

#[tokio::test]
async fn every_response_says_nosniff() {
    let app = TestApp::spawn().await;
    for path in [
        "/health",
        "/v1/marketplace/gpu/list",
        "/metrics",
        "/v1/admin/policies",
    ] {
        let reply = app.get(path).await;
        assert!(reply.status < 400, "{path}: {}", reply.text);
        assert_nosniff(&reply);
    }
}
