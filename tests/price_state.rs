//! Quotes that do not depend on which replica answers or on who read what before: the pricing
//! guardrails' memory of each GPU (its last booked quote) lives in the database, is written only when a
//! quote is booked, and every replica reads it. And the pricing endpoint's capability lookup.

mod common;

use std::time::Duration;

use common::{TestApp, micros};
use serde_json::{Value, json};

/// The shipped policies with a tight change limit (1 % per hour), so that whether a quote saw the
/// GPU's last booked price is plain in the price.
async fn tight_market() -> TestApp {
    TestApp::spawn_with_shipped_policies(|config| {
        let path = config.policies_dir.join("policies.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let tight = text.replace(
            "max_change_percent = 50.0, refresh_interval_secs = 300",
            "max_change_percent = 1.0, refresh_interval_secs = 3600",
        );
        assert_ne!(
            text, tight,
            "the guardrails line of policies/policies.toml changed"
        );
        std::fs::write(path, tight).unwrap();
    })
    .await
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let response = client
        .post(url)
        .header("X-Api-Key", "")
        .json(&body)
        .send()
        .await
        .expect("the request reaches the server");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn current_price(app: &TestApp, gpu_id: &str) -> i64 {
    app.count(&format!(
        "SELECT current_price_micro FROM gpus WHERE id = '{gpu_id}'"
    ))
    .await
}

fn within_one_percent(price: i64, anchor: i64) -> bool {
    (price - anchor).abs() <= anchor / 100 + 1
}

#[tokio::test]
async fn two_replicas_quote_a_gpu_alike_after_a_booking_on_one_of_them() {
    let app = tight_market().await;
    let replica = gpu_market::server::spawn(app.config.clone())
        .await
        .expect("a second replica on the same database");
    let other = format!("http://{}", replica.local_addr());

    let mut gpus = Vec::new();
    for _ in 0..4 {
        gpus.push(app.register_gpu("RTX 4090", 1.0).await);
    }
    // A busy model: the last of four GPUs is booked at a raised price, on the first replica.
    for gpu_id in &gpus[1..] {
        app.book(gpu_id, 1.0).await;
    }
    let booked = app.book(&gpus[0], 1.0).await;
    let anchor = micros(&booked["price_per_hour"]);
    assert!(anchor > 1_000_000, "demand raised the price: {booked}");
    for gpu_id in &gpus {
        app.release(gpu_id).await;
    }
    // Each replica keeps the slow market facts (booking rate) for 2 s: let both see the same.
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    // The model is idle now. Each replica reprices the catalogue from the database's state: both
    // give the same price, held within 1 % of the booked one.
    app.post_empty("/v1/marketplace/sync-offers")
        .await
        .expect(200);
    let first = current_price(&app, &gpus[0]).await;
    let (status, _) = post(
        &app.client,
        format!("{other}/v1/marketplace/sync-offers"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let second = current_price(&app, &gpus[0]).await;
    assert_eq!(first, second, "both replicas quote the GPU alike");
    assert!(
        within_one_percent(first, anchor),
        "{first} vs booked {anchor}"
    );

    // Booking it on the other replica: the change limit anchored on the first replica's booking holds.
    let (status, again) = post(
        &app.client,
        format!("{other}/v1/marketplace/gpu/{}/book", gpus[0]),
        json!({ "duration_hours": 1.0 }),
    )
    .await;
    assert_eq!(status, 201, "{again}");
    let price = micros(&again["price_per_hour"]);
    assert!(
        within_one_percent(price, anchor),
        "{again} vs booked {anchor}"
    );
    assert!(
        again["pricing"]["explanation"]
            .as_str()
            .unwrap_or_default()
            .contains("change limited"),
        "the idle price would have moved further: {again}"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM gpu_price_state").await,
        4,
        "one row per booked GPU"
    );
    replica.shutdown().await;
}

/// GPUs asking 1.0, 3.0 and 3.0: the pricing endpoint quotes a representative asking the median (3.0)
/// under the cheapest GPU's id.
async fn skewed_market() -> (TestApp, String) {
    let app = tight_market().await;
    let cheap = app.register_gpu("RTX 4090", 1.0).await;
    app.register_gpu("RTX 4090", 3.0).await;
    app.register_gpu("RTX 4090", 3.0).await;
    (app, cheap)
}

#[tokio::test]
async fn reading_prices_changes_no_later_booking_price() {
    let (read, read_gpu) = skewed_market().await;
    let (unread, unread_gpu) = skewed_market().await;

    let pricing = read
        .get("/v1/marketplace/pricing/RTX4090")
        .await
        .expect(200)
        .clone();
    assert_eq!(pricing["recommended_gpu"], read_gpu.as_str(), "{pricing}");
    read.get("/v1/marketplace/gpu/list").await.expect(200);
    read.details(&read_gpu).await;
    read.post_empty("/v1/marketplace/sync-offers")
        .await
        .expect(200);
    assert_eq!(
        read.count("SELECT COUNT(*) FROM gpu_price_state").await,
        0,
        "reads write no pricing state"
    );

    let after_read = read.book(&read_gpu, 1.0).await;
    let without_read = unread.book(&unread_gpu, 1.0).await;
    assert_eq!(
        micros(&after_read["price_per_hour"]),
        micros(&without_read["price_per_hour"]),
        "{after_read} vs {without_read}"
    );
    assert_eq!(
        after_read["pricing"]["multiplier"],
        without_read["pricing"]["multiplier"]
    );
}

#[tokio::test]
async fn pricing_finds_gpus_by_a_part_of_a_capability_in_any_case() {
    let app = TestApp::spawn().await;
    app.register(json!({
        "name": "Custom Board",
        "price_per_hour": 0.8,
        "capabilities": ["fp16", "llama2-7b"]
    }))
    .await;
    app.register_gpu("RTX 4090", 0.4).await;
    for model in ["llama2", "LLaMA2-7B", "ama2", "fp16"] {
        let pricing = app
            .get(&format!("/v1/marketplace/pricing/{model}"))
            .await
            .expect(200)
            .clone();
        assert_eq!(
            pricing["total_gpus"].as_i64(),
            Some(1),
            "{model}: {pricing}"
        );
        assert_eq!(micros(&pricing["average_price"]), 800_000, "{model}");
    }
    for model in ["llama3", "mistral", "fp16-llama2"] {
        app.get(&format!("/v1/marketplace/pricing/{model}"))
            .await
            .expect_error(404);
    }
    // Models still match as the list filter does, capabilities or not.
    let pricing = app
        .get("/v1/marketplace/pricing/rtx4090")
        .await
        .expect(200)
        .clone();
    assert_eq!(pricing["total_gpus"].as_i64(), Some(1));
}
