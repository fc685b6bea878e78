//! The older coordinator's marketplace views (offers, stats, bids, sync-offers, miner-offers), computed
//! from the real registry and bids: they follow what is registered, booked and bid.

mod common;

use common::{TestApp, micros};
use serde_json::{Value, json};

async fn stats(app: &TestApp) -> Value {
    app.get("/v1/marketplace/stats").await.expect(200).clone()
}

fn bid(capacity: i64, price: f64) -> Value {
    json!({ "provider": "acme-labs", "capacity": capacity, "price": price, "notes": "nightly training" })
}

#[tokio::test]
async fn stats_of_an_empty_market_are_zero() {
    let app = TestApp::spawn().await;
    let stats = stats(&app).await;
    assert_eq!(stats["totalOffers"].as_i64(), Some(0), "{stats}");
    assert_eq!(stats["openCapacity"].as_i64(), Some(0), "{stats}");
    assert_eq!(stats["averagePrice"].as_f64(), Some(0.0), "{stats}");
    assert_eq!(stats["activeBids"].as_i64(), Some(0), "{stats}");
}

#[tokio::test]
async fn stats_follow_registrations() {
    let app = TestApp::spawn().await;
    app.register_gpu("RTX 4090", 1.0).await;
    app.register_gpu("A100", 2.0).await;
    app.register_gpu("H100", 3.0).await;
    let stats = stats(&app).await;
    assert_eq!(stats["totalOffers"].as_i64(), Some(3), "{stats}");
    assert_eq!(stats["openCapacity"].as_i64(), Some(3), "{stats}");
    assert_eq!(micros(&stats["averagePrice"]), 2_000_000, "{stats}");
}

#[tokio::test]
async fn a_booking_closes_capacity() {
    let app = TestApp::spawn().await;
    app.register_gpu("RTX 4090", 1.0).await;
    let middle = app.register_gpu("A100", 2.0).await;
    app.register_gpu("H100", 3.0).await;
    app.book(&middle, 1.0).await;

    let booked = stats(&app).await;
    assert_eq!(booked["totalOffers"].as_i64(), Some(3), "{booked}");
    assert_eq!(booked["openCapacity"].as_i64(), Some(2), "{booked}");
    assert_eq!(micros(&booked["averagePrice"]), 2_000_000, "{booked}");

    app.release(&middle).await;
    assert_eq!(stats(&app).await["openCapacity"].as_i64(), Some(3));
}

#[tokio::test]
async fn a_deleted_gpu_is_no_longer_offered() {
    let app = TestApp::spawn().await;
    app.register_gpu("RTX 4090", 1.0).await;
    let gone = app.register_gpu("A100", 3.0).await;
    app.delete(&format!("/v1/marketplace/gpu/{gone}"))
        .await
        .expect(200);
    let stats = stats(&app).await;
    assert_eq!(stats["totalOffers"].as_i64(), Some(1), "{stats}");
    assert_eq!(micros(&stats["averagePrice"]), 1_000_000, "{stats}");
    let offers = app.get("/v1/marketplace/offers").await.expect(200).clone();
    assert_eq!(offers.as_array().unwrap().len(), 1, "{offers}");
}

#[tokio::test]
async fn a_bid_is_accepted_with_202_and_an_id_and_counts_as_active() {
    let app = TestApp::spawn().await;
    let reply = app.post("/v1/marketplace/bids", &bid(4, 1.5)).await;
    let body = reply.expect(202);
    let id = body["id"].as_str().expect("bid id");
    assert!(!id.is_empty());
    assert_eq!(stats(&app).await["activeBids"].as_i64(), Some(1));

    app.post("/v1/marketplace/bids", &bid(1, 0.5))
        .await
        .expect(202);
    assert_eq!(stats(&app).await["activeBids"].as_i64(), Some(2));
    assert_eq!(app.count("SELECT COUNT(*) FROM bids").await, 2);
}

#[tokio::test]
async fn a_bid_without_positive_capacity_and_price_is_rejected() {
    let app = TestApp::spawn().await;
    app.post("/v1/marketplace/bids", &bid(0, 1.0))
        .await
        .expect_error(400);
    app.post("/v1/marketplace/bids", &bid(1, 0.0))
        .await
        .expect_error(400);
    app.post(
        "/v1/marketplace/bids",
        &json!({ "provider": "p", "price": 1.0 }),
    )
    .await
    .expect_error(422);
    app.post(
        "/v1/marketplace/bids",
        &json!({ "provider": "p", "capacity": "x", "price": 1.0 }),
    )
    .await
    .expect_error(422);
    assert_eq!(app.count("SELECT COUNT(*) FROM bids").await, 0);
    assert_eq!(stats(&app).await["activeBids"].as_i64(), Some(0));
}

#[tokio::test]
async fn offers_list_one_offer_per_registered_gpu() {
    let app = TestApp::spawn().await;
    app.register_as(
        json!({ "name": "RTX 4090", "memory_gb": 24, "price_per_hour": 1.0 }),
        "",
        "m1",
    )
    .await;
    app.register_as(
        json!({ "name": "A100", "memory_gb": 80, "price_per_hour": 2.5 }),
        "",
        "m2",
    )
    .await;

    let offers = app.get("/v1/marketplace/offers").await.expect(200).clone();
    let offers = offers.as_array().expect("offers is an array");
    assert_eq!(offers.len(), 2);
    let mut prices: Vec<i64> = offers.iter().map(|o| micros(&o["price"])).collect();
    prices.sort();
    assert_eq!(prices, vec![1_000_000, 2_500_000]);
    for offer in offers {
        assert!(offer["id"].is_string(), "{offer}");
        assert!(offer["provider"].is_string(), "{offer}");
        assert!(offer["capacity"].is_i64(), "{offer}");
        assert!(offer["status"].is_string(), "{offer}");
        common::assert_timestamp(&offer["created_at"]);
    }
    let mut providers: Vec<&str> = offers
        .iter()
        .map(|o| o["provider"].as_str().unwrap())
        .collect();
    providers.sort();
    assert_eq!(providers, vec!["m1", "m2"]);
}

#[tokio::test]
async fn sync_offers_is_allowed_to_an_admin() {
    let app = TestApp::spawn().await; // local mode: all roles
    app.register_gpu("RTX 4090", 1.0).await;
    app.post_empty("/v1/marketplace/sync-offers")
        .await
        .expect(200);
    assert_eq!(
        stats(&app).await["totalOffers"].as_i64(),
        Some(1),
        "syncing invents nothing"
    );
}

#[tokio::test]
async fn miner_offers_show_the_registered_gpus() {
    let app = TestApp::spawn().await;
    let gpu_id = app
        .register_as(
            json!({ "name": "RTX 4090", "price_per_hour": 1.0 }),
            "",
            "m1",
        )
        .await;
    let reply = app.get("/v1/marketplace/miner-offers").await;
    reply.expect(200);
    assert!(
        reply.text.contains(&gpu_id) || reply.text.contains("RTX 4090"),
        "{}",
        reply.text
    );
}

#[tokio::test]
async fn views_of_an_empty_market_are_empty_not_mock_data() {
    let app = TestApp::spawn().await;
    let offers = app.get("/v1/marketplace/offers").await.expect(200).clone();
    assert_eq!(offers, json!([]));
    app.get("/v1/marketplace/miner-offers").await.expect(200);
}
