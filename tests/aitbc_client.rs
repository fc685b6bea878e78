//! The aitbc command-line client's nine marketplace commands, replayed with the exact requests it sends
//! (empty `X-Api-Key`, `X-Miner-ID: default`, `limit=20`, `comment: null`, release without a body) and
//! checked against what it needs back: 201 only for register/book/review, 200 only for the rest.

mod common;

use common::{TestApp, assert_id, assert_timestamp, micros};
use serde_json::{Value, json};

/// What `marketplace gpu register --name "RTX 4090" --memory 24 --cuda-cores 16384
/// --compute-capability 8.9 --price-per-hour 0.5 --description "..."` sends.
fn client_registration() -> Value {
    json!({
        "name": "RTX 4090",
        "memory_gb": 24,
        "cuda_cores": 16384,
        "compute_capability": "8.9",
        "price_per_hour": 0.5,
        "description": "test rig in the basement"
    })
}

#[tokio::test]
async fn the_whole_client_sequence_succeeds_with_the_status_codes_the_client_accepts() {
    let app = TestApp::spawn().await;

    // register → 201, the client reads gpu_id
    let reply = app.register_raw(client_registration()).await;
    let gpu_id = assert_id(&reply.expect(201)["gpu_id"], "gpu_");

    // list → 200 array
    let reply = app.get("/v1/marketplace/gpu/list?limit=20").await;
    assert!(
        reply.expect(200).as_array().is_some(),
        "list is an array: {}",
        reply.text
    );

    // details → 200 object
    app.get(&format!("/v1/marketplace/gpu/{gpu_id}"))
        .await
        .expect(200);

    // book → 201, the client reads booking_id
    let body = json!({ "gpu_id": gpu_id, "duration_hours": 2.0, "job_id": "job-42" });
    let reply = app
        .post(&format!("/v1/marketplace/gpu/{gpu_id}/book"), &body)
        .await;
    assert_id(&reply.expect(201)["booking_id"], "bk_");

    // release, no body → 200
    app.post_empty(&format!("/v1/marketplace/gpu/{gpu_id}/release"))
        .await
        .expect(200);

    // orders → 200 array
    let reply = app.get("/v1/marketplace/orders?limit=10").await;
    assert!(
        reply.expect(200).as_array().is_some(),
        "orders is an array: {}",
        reply.text
    );

    // pricing RTX4090 (no space, as users type it) → 200
    app.get("/v1/marketplace/pricing/RTX4090").await.expect(200);

    // review with comment null → 201
    let body = json!({ "rating": 5, "comment": null });
    app.post(&format!("/v1/marketplace/gpu/{gpu_id}/reviews"), &body)
        .await
        .expect(201);

    // reviews → 200
    app.get(&format!("/v1/marketplace/gpu/{gpu_id}/reviews?limit=10"))
        .await
        .expect(200);
}

#[tokio::test]
async fn register_answers_with_the_documented_fields() {
    let app = TestApp::spawn().await;
    let reply = app.register_raw(client_registration()).await;
    let body = reply.expect(201);
    assert_id(&body["gpu_id"], "gpu_");
    assert_eq!(body["status"], "registered");
    assert_eq!(micros(&body["price_per_hour"]), 500_000);
    assert!(body["message"].is_string(), "message: {body}");
}

#[tokio::test]
async fn a_registration_with_only_a_name_and_price_is_accepted() {
    // `--name` is the only required option; everything the user leaves out is absent from the body.
    let app = TestApp::spawn().await;
    let reply = app
        .register_raw(json!({ "name": "RTX 3060", "price_per_hour": 0.1 }))
        .await;
    let gpu_id = assert_id(&reply.expect(201)["gpu_id"], "gpu_");
    let gpu = app.details(&gpu_id).await;
    assert_eq!(gpu["model"], "RTX 3060");
    assert_eq!(gpu["status"], "available");
}

#[tokio::test]
async fn a_registered_gpu_is_listed_with_every_documented_field() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register(client_registration()).await;

    let reply = app.get("/v1/marketplace/gpu/list?limit=20").await;
    let list = reply.expect(200).as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{}", reply.text);
    let gpu = &list[0];
    assert_eq!(gpu["id"], gpu_id.as_str());
    assert_eq!(
        gpu["miner_id"], "default",
        "X-Miner-ID: default names the miner"
    );
    assert_eq!(gpu["model"], "RTX 4090");
    assert_eq!(gpu["memory_gb"].as_f64(), Some(24.0));
    assert!(
        gpu.get("cuda_version").is_some(),
        "cuda_version present (null allowed): {gpu}"
    );
    assert_eq!(gpu["cuda_cores"].as_i64(), Some(16384));
    assert_eq!(gpu["compute_capability"], "8.9");
    assert!(
        gpu.get("region").is_some(),
        "region present (null allowed): {gpu}"
    );
    assert_eq!(gpu["description"], "test rig in the basement");
    assert!(
        gpu["capabilities"].is_array(),
        "capabilities is a list: {gpu}"
    );
    assert_eq!(micros(&gpu["price_per_hour"]), 500_000);
    assert_eq!(
        micros(&gpu["current_price"]),
        500_000,
        "built-in pricing quotes the asking price"
    );
    assert_eq!(gpu["status"], "available");
    assert_eq!(gpu["average_rating"].as_f64(), Some(0.0));
    assert_eq!(gpu["total_reviews"].as_i64(), Some(0));
    assert_eq!(gpu["total_bookings"].as_i64(), Some(0));
    assert!(gpu["last_heartbeat"].is_null(), "never heartbeated: {gpu}");
    assert_timestamp(&gpu["created_at"]);
}

#[tokio::test]
async fn the_list_filters_the_client_can_send_find_the_gpu() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register(client_registration()).await;
    app.register(json!({ "name": "A100", "memory_gb": 80, "price_per_hour": 2.0 }))
        .await;

    // `marketplace gpu list --available --model RTX4090 --memory-min 16 --price-max 1`
    let ids = app
        .list_ids("?limit=20&available=true&model=RTX4090&memory_min=16&price_max=1")
        .await;
    assert_eq!(ids, vec![gpu_id]);
}

#[tokio::test]
async fn details_answer_with_the_gpu_object() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register(client_registration()).await;
    let gpu = app.details(&gpu_id).await;
    assert_eq!(gpu["id"], gpu_id.as_str());
    assert_eq!(gpu["model"], "RTX 4090");
    assert_eq!(gpu["status"], "available");
    assert!(
        gpu.get("current_booking").is_none_or(Value::is_null),
        "no current_booking while available: {gpu}"
    );
}

#[tokio::test]
async fn book_answers_with_the_documented_fields() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register(client_registration()).await;

    let body = json!({ "gpu_id": gpu_id, "duration_hours": 2, "job_id": "job-42" });
    let reply = app
        .post(&format!("/v1/marketplace/gpu/{gpu_id}/book"), &body)
        .await;
    let booking = reply.expect(201);
    assert_id(&booking["booking_id"], "bk_");
    assert_id(&booking["order_id"], "ord_");
    assert_eq!(booking["gpu_id"], gpu_id.as_str());
    assert_eq!(booking["status"], "booked");
    assert_eq!(micros(&booking["price_per_hour"]), 500_000);
    assert_eq!(micros(&booking["total_cost"]), 1_000_000, "0.5/h for 2 h");
    let start = assert_timestamp(&booking["start_time"]);
    let end = assert_timestamp(&booking["end_time"]);
    assert_eq!(end - start, 2 * 3_600 * 1_000_000, "end = start + 2 h");
    let pricing = &booking["pricing"];
    assert_eq!(pricing["multiplier"].as_f64(), Some(1.0), "{booking}");
    assert!(pricing["policy"].is_string(), "{booking}");
    assert_eq!(pricing["fallback"], false, "{booking}");
}

#[tokio::test]
async fn a_booking_without_job_id_is_accepted() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register(client_registration()).await;
    let body = json!({ "gpu_id": gpu_id, "duration_hours": 1.5 });
    app.post(&format!("/v1/marketplace/gpu/{gpu_id}/book"), &body)
        .await
        .expect(201);
}

#[tokio::test]
async fn details_of_a_booked_gpu_show_the_current_booking() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register(client_registration()).await;
    let booking = app.book(&gpu_id, 2.0).await;

    let gpu = app.details(&gpu_id).await;
    assert_eq!(gpu["status"], "booked");
    assert_eq!(gpu["total_bookings"].as_i64(), Some(1));
    let current = &gpu["current_booking"];
    assert_eq!(current["booking_id"], booking["booking_id"], "{gpu}");
    assert_eq!(
        current["client_id"], "local",
        "local mode books as principal `local`"
    );
    assert_eq!(current["duration_hours"].as_f64(), Some(2.0));
    assert_eq!(micros(&current["total_cost"]), 1_000_000);
    assert_eq!(current["start_time"], booking["start_time"]);
    assert_eq!(current["end_time"], booking["end_time"]);
}

#[tokio::test]
async fn release_without_a_body_answers_with_the_documented_fields() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register(client_registration()).await;
    let booking = app.book(&gpu_id, 2.0).await;

    let reply = app
        .post_empty(&format!("/v1/marketplace/gpu/{gpu_id}/release"))
        .await;
    let released = reply.expect(200);
    assert_eq!(released["status"], "released");
    assert_eq!(released["gpu_id"], gpu_id.as_str());
    assert_eq!(released["booking_id"], booking["booking_id"]);
    assert!(released["message"].is_string(), "{released}");
    assert_eq!(
        micros(&released["refund"]) + micros(&released["charged"]),
        1_000_000,
        "refund + charged = total: {released}"
    );
    assert_eq!(app.details(&gpu_id).await["status"], "available");
}

#[tokio::test]
async fn orders_list_the_booking_with_every_documented_field() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register(client_registration()).await;
    let body = json!({ "gpu_id": gpu_id, "duration_hours": 2, "job_id": "job-42" });
    let booking = app
        .post(&format!("/v1/marketplace/gpu/{gpu_id}/book"), &body)
        .await
        .expect(201)
        .clone();
    let released = app.release(&gpu_id).await;

    let reply = app.get("/v1/marketplace/orders?limit=10").await;
    let orders = reply.expect(200).as_array().unwrap().clone();
    assert_eq!(orders.len(), 1, "{}", reply.text);
    let order = &orders[0];
    assert_eq!(order["order_id"], booking["order_id"]);
    assert_eq!(order["booking_id"], booking["booking_id"]);
    assert_eq!(order["gpu_id"], gpu_id.as_str());
    assert_eq!(order["gpu_model"], "RTX 4090");
    assert_eq!(order["miner_id"], "default");
    assert_eq!(order["client_id"], "local");
    assert_eq!(order["duration_hours"].as_f64(), Some(2.0));
    assert_eq!(micros(&order["price_per_hour"]), 500_000);
    assert_eq!(micros(&order["total_cost"]), 1_000_000);
    assert_eq!(micros(&order["refund"]), micros(&released["refund"]));
    assert_eq!(micros(&order["charged"]), micros(&released["charged"]));
    assert_eq!(order["status"], "completed", "released by its own client");
    let created = assert_timestamp(&order["created_at"]);
    let completed = assert_timestamp(&order["completed_at"]);
    assert!(completed >= created);
    assert_eq!(order["job_id"], "job-42");
}

#[tokio::test]
async fn orders_with_the_status_option_filter_by_status() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register(client_registration()).await;
    app.book(&gpu_id, 2.0).await;

    let active = app
        .get("/v1/marketplace/orders?limit=10&status=active")
        .await;
    assert_eq!(active.expect(200).as_array().unwrap().len(), 1);
    let completed = app
        .get("/v1/marketplace/orders?limit=10&status=completed")
        .await;
    assert_eq!(completed.expect(200).as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn pricing_for_a_model_answers_with_the_documented_fields() {
    let app = TestApp::spawn().await;
    app.register(client_registration()).await;
    app.register(json!({ "name": "RTX 4090", "memory_gb": 24, "price_per_hour": 0.7 }))
        .await;
    app.register(json!({ "name": "rtx-4090", "memory_gb": 24, "price_per_hour": 0.9 }))
        .await;

    let reply = app.get("/v1/marketplace/pricing/RTX4090").await;
    let pricing = reply.expect(200);
    assert!(pricing["model"].is_string(), "{pricing}");
    assert_eq!(micros(&pricing["min_price"]), 500_000);
    assert_eq!(micros(&pricing["max_price"]), 900_000);
    assert_eq!(micros(&pricing["average_price"]), 700_000);
    assert_eq!(micros(&pricing["median_price"]), 700_000);
    assert_eq!(pricing["total_gpus"].as_i64(), Some(3));
    assert_eq!(pricing["available_gpus"].as_i64(), Some(3));
    assert_eq!(pricing["utilization"].as_f64(), Some(0.0));
    assert!(pricing["demand_multiplier"].is_number(), "{pricing}");
    assert!(pricing["current_price"].is_number(), "{pricing}");
    assert!(pricing["recommended_price"].is_number(), "{pricing}");
    assert!(pricing.get("recommended_gpu").is_some(), "{pricing}");
    assert!(pricing["price_history"].is_array(), "{pricing}");
    for point in pricing["price_history"].as_array().unwrap() {
        assert_timestamp(&point["time"]);
        assert!(point["average_price"].is_number(), "{point}");
    }
    assert!(pricing["policy"].get("version").is_some(), "{pricing}");
    assert!(pricing["policy"]["fallback"].is_boolean(), "{pricing}");
}

#[tokio::test]
async fn a_review_with_a_null_comment_answers_with_the_documented_fields() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register(client_registration()).await;

    let body = json!({ "rating": 4, "comment": null });
    let reply = app
        .post(&format!("/v1/marketplace/gpu/{gpu_id}/reviews"), &body)
        .await;
    let added = reply.expect(201);
    assert_eq!(added["status"], "review_added");
    assert_eq!(added["gpu_id"], gpu_id.as_str());
    assert_id(&added["review_id"], "rv_");
    assert_eq!(added["average_rating"].as_f64(), Some(4.0));
    assert_eq!(added["moderation"]["decision"], "accept", "{added}");
    assert!(added["moderation"]["reason"].is_string(), "{added}");
}

#[tokio::test]
async fn reviews_answer_with_the_documented_fields() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register(client_registration()).await;
    let body = json!({ "rating": 4, "comment": null });
    let added = app
        .post(&format!("/v1/marketplace/gpu/{gpu_id}/reviews"), &body)
        .await
        .expect(201)
        .clone();

    let reply = app
        .get(&format!("/v1/marketplace/gpu/{gpu_id}/reviews?limit=10"))
        .await;
    let reviews = reply.expect(200);
    assert_eq!(reviews["gpu_id"], gpu_id.as_str());
    assert_eq!(reviews["average_rating"].as_f64(), Some(4.0));
    assert_eq!(reviews["total_reviews"].as_i64(), Some(1));
    let list = reviews["reviews"].as_array().expect("reviews is a list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["review_id"], added["review_id"]);
    assert_eq!(list[0]["rating"].as_i64(), Some(4));
    assert!(list[0]["comment"].is_null(), "{reviews}");
    assert_eq!(list[0]["user"], "local");
    assert_timestamp(&list[0]["date"]);
}

#[tokio::test]
async fn the_older_registration_spelling_is_accepted() {
    let app = TestApp::spawn().await;
    let gpu = json!({
        "name": "A100",
        "memory": 80,
        "miner_id": "default",
        "region": "us-west",
        "cuda_version": "12.2",
        "capabilities": ["llm", "training"],
        "price_per_hour": 1.25
    });
    let reply = app.register_raw(gpu).await;
    let gpu_id = assert_id(&reply.expect(201)["gpu_id"], "gpu_");

    let gpu = app.details(&gpu_id).await;
    assert_eq!(gpu["model"], "A100");
    assert_eq!(
        gpu["memory_gb"].as_f64(),
        Some(80.0),
        "`memory` is `memory_gb`: {gpu}"
    );
    assert_eq!(gpu["region"], "us-west");
    assert_eq!(gpu["cuda_version"], "12.2");
    assert_eq!(gpu["capabilities"], json!(["llm", "training"]));
    assert_eq!(micros(&gpu["price_per_hour"]), 1_250_000);
}

#[tokio::test]
async fn the_older_registration_names_its_miner_in_the_body() {
    // The older coordinator's tests send no X-Miner-ID; the body's `miner_id` names the miner.
    let app = TestApp::spawn().await;
    let gpu =
        json!({ "name": "A100", "memory": 80, "miner_id": "miner-7", "price_per_hour": 1.25 });
    let reply = app
        .send(
            app.client
                .post(app.url("/v1/marketplace/gpu/register"))
                .header("X-Api-Key", "")
                .json(&json!({ "gpu": gpu })),
        )
        .await;
    let gpu_id = assert_id(&reply.expect(201)["gpu_id"], "gpu_");
    assert_eq!(app.details(&gpu_id).await["miner_id"], "miner-7");
}

#[tokio::test]
async fn model_is_accepted_in_place_of_name() {
    let app = TestApp::spawn().await;
    let gpu_id = app
        .register(json!({ "model": "L40S", "memory_gb": 48, "price_per_hour": 1.1 }))
        .await;
    assert_eq!(app.details(&gpu_id).await["model"], "L40S");
}
