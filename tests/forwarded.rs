//! Local mode behind a reverse proxy: a proxy on the same host makes every caller look local, so a
//! request that says it was forwarded is refused unless the proxy is trusted, and then judged by the
//! address it forwards.

mod common;

use common::{ADMIN_KEY, TestApp};
use serde_json::json;

const FORWARDING: [(&str, &str); 4] = [
    ("X-Forwarded-For", "203.0.113.9"),
    ("X-Forwarded-For", "127.0.0.1"),
    ("Forwarded", "for=127.0.0.1"),
    ("X-Real-IP", "127.0.0.1"),
];

async fn register_with(app: &TestApp, header: (&str, &str)) -> common::Reply {
    app.send(
        app.client
            .post(app.url("/v1/marketplace/gpu/register"))
            .header("X-Api-Key", "")
            .header(header.0, header.1)
            .json(&json!({ "gpu": { "name": "RTX 4090", "price_per_hour": 0.5 } })),
    )
    .await
}

async fn get_with(app: &TestApp, path: &str, header: (&str, &str)) -> common::Reply {
    app.send(
        app.client
            .get(app.url(path))
            .header("X-Api-Key", "")
            .header(header.0, header.1),
    )
    .await
}

#[tokio::test]
async fn local_mode_refuses_forwarded_requests_from_an_untrusted_proxy() {
    let app = TestApp::spawn().await;
    for header in FORWARDING {
        let reply = register_with(&app, header).await;
        reply.expect_error(403);
        let detail = reply.body["detail"].as_str().unwrap();
        assert!(
            detail.contains("local mode") && detail.contains("trusted_proxies"),
            "{header:?}: {detail}"
        );
        get_with(&app, "/v1/marketplace/gpu/list", header)
            .await
            .expect_error(403);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM gpus").await, 0);
    // The same requests without forwarding headers are served as before.
    app.get("/v1/marketplace/gpu/list").await.expect(200);
    app.register_gpu("RTX 4090", 0.5).await;
}

#[tokio::test]
async fn a_trusted_proxy_is_judged_by_the_address_it_forwards() {
    let app = TestApp::spawn_with(|config| {
        config.trusted_proxies = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    })
    .await;
    // Forwarded for a remote caller: not local, refused whatever the header kind.
    for header in [
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-For", "127.0.0.1, 203.0.113.9"),
        ("Forwarded", "for=\"[2001:db8::7]:4711\""),
        ("X-Real-IP", "198.51.100.3"),
        ("Forwarded", "for=unknown"),
    ] {
        let reply = register_with(&app, header).await;
        reply.expect_error(403);
        common::assert_detail(&reply);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM gpus").await, 0);
    // Forwarded for a loopback caller (the proxy's own host): served with every role.
    for header in [
        ("X-Forwarded-For", "127.0.0.1"),
        ("Forwarded", "for=127.0.0.1;proto=http"),
        ("X-Real-IP", "::1"),
    ] {
        register_with(&app, header).await.expect(201);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM gpus").await, 3);
    // And without a header, the peer (loopback) is the caller as before.
    app.register_gpu("RTX 4090", 0.5).await;
}

#[tokio::test]
async fn with_keys_forwarding_headers_change_nothing() {
    let app = TestApp::spawn_with_keys().await;
    for header in FORWARDING {
        get_with(&app, "/v1/marketplace/gpu/list", header)
            .await
            .expect(200);
        let reply = app
            .send(
                app.client
                    .get(app.url("/v1/admin/reviews"))
                    .header("X-Api-Key", ADMIN_KEY)
                    .header(header.0, header.1),
            )
            .await;
        reply.expect(200);
    }
}
