//! The OpenAPI document and the docs page say what the server really serves: every endpoint of the
//! contract is documented with its method, every documented operation is routed, and the docs page
//! works without reaching anything but this server.

mod common;

use common::{ADMIN_KEY, TestApp};
use reqwest::Method;
use serde_json::Value;

/// Every `/v1` endpoint of the REST contract (`api-contract.md`), with its method.
const CONTRACT: &[(&str, &str)] = &[
    ("POST", "/v1/marketplace/gpu/register"),
    ("GET", "/v1/marketplace/gpu/list"),
    ("GET", "/v1/marketplace/gpu/{id}"),
    ("DELETE", "/v1/marketplace/gpu/{id}"),
    ("POST", "/v1/marketplace/gpu/{id}/book"),
    ("POST", "/v1/marketplace/gpu/{id}/release"),
    ("POST", "/v1/marketplace/gpu/{id}/heartbeat"),
    ("GET", "/v1/marketplace/gpu/{id}/reviews"),
    ("POST", "/v1/marketplace/gpu/{id}/reviews"),
    ("GET", "/v1/marketplace/orders"),
    ("GET", "/v1/marketplace/pricing/{model}"),
    ("GET", "/v1/marketplace/offers"),
    ("GET", "/v1/marketplace/stats"),
    ("POST", "/v1/marketplace/bids"),
    ("POST", "/v1/marketplace/sync-offers"),
    ("GET", "/v1/marketplace/miner-offers"),
    ("GET", "/v1/admin/policies"),
    ("PUT", "/v1/admin/policies/{slot}"),
    ("POST", "/v1/admin/policies/{slot}/rollback"),
    ("GET", "/v1/admin/reviews"),
    ("POST", "/v1/admin/reviews/{id}/approve"),
    ("POST", "/v1/admin/reviews/{id}/reject"),
    ("GET", "/v1/health"),
];

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// `(METHOD, path)` of every operation in the served document.
async fn documented(app: &TestApp) -> Vec<(String, String)> {
    let doc = app.get("/openapi.json").await.expect(200).clone();
    let paths = doc["paths"].as_object().expect("a paths object");
    let mut operations = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if item.get(method).is_some() {
                operations.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

#[tokio::test]
async fn every_contract_endpoint_is_documented_with_its_method() {
    let app = TestApp::spawn().await;
    let documented = documented(&app).await;
    for (method, path) in CONTRACT {
        assert!(
            documented.iter().any(|(m, p)| m == method && p == path),
            "{method} {path} is not in /openapi.json; documented: {documented:?}"
        );
    }
    assert!(
        documented.iter().any(|(_, p)| p == "/health"),
        "{documented:?}"
    );
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = TestApp::spawn().await;
    for (method, path) in documented(&app).await {
        // Any id will do: an unknown one is the endpoint's own 404, not the router's.
        let concrete = path
            .replace("{id}", "x")
            .replace("{model}", "x")
            .replace("{slot}", "x");
        let request = app
            .client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                app.url(&concrete),
            )
            .header("X-Api-Key", ADMIN_KEY);
        let reply = app.send(request).await;
        assert_ne!(reply.status, 405, "{method} {path}: {}", reply.text);
        assert_ne!(
            reply.body.get("detail").and_then(Value::as_str),
            Some("no such endpoint"),
            "{method} {path} is documented but not routed"
        );
    }
}

/// The `src` and `href` values of a page.
fn links(page: &str) -> Vec<String> {
    let mut links = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (start, _) in page.match_indices(attribute) {
            let rest = &page[start + attribute.len()..];
            if let Some(end) = rest.find('"') {
                links.push(rest[..end].to_owned());
            }
        }
    }
    links
}

#[tokio::test]
async fn the_docs_page_loads_everything_from_this_server() {
    let app = TestApp::spawn().await;
    for page_path in ["/docs", "/docs/"] {
        let reply = app.get(page_path).await;
        assert_eq!(reply.status, 200, "{page_path}: {}", reply.text);
        let page = &reply.text;
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "{page_path} names no outside address: {page}"
        );
        assert!(
            page.contains("/openapi.json"),
            "the page renders our document"
        );
        let links = links(page);
        assert!(!links.is_empty(), "{page}");
        for link in links {
            assert!(!link.starts_with("//"), "{link}");
            // Relative links resolve under the page's <base href="/docs/">.
            let path = match link.strip_prefix('/') {
                Some(_) => link.clone(),
                None => format!("/docs/{}", link.trim_start_matches("./")),
            };
            let asset = app.get(&path).await;
            assert_eq!(asset.status, 200, "{link} ({path}) from {page_path}");
            assert!(!asset.text.is_empty(), "{path}");
        }
    }
    assert_eq!(app.get("/docs/no-such-file.js").await.status, 404);
}
