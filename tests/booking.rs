//! Booking: atomicity under concurrency, duration bounds, refunds in exact micro-units, the order
//! lifecycle (completed / cancelled / ran to its end) and who sees which orders.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    ADMIN_KEY, ALICE_KEY, BOB_KEY, CAROL_KEY, DAVE_KEY, TestApp, eventually, micros, pro_rata,
};
use gpu_market::policy::{
    BuiltinPolicies, DecisionSource, ModerationDecision, ModerationRequest, Policies, PriceQuote,
    PricingRequest, TimeoutAction, TimeoutDecision, TimeoutRequest,
};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_bookings_of_one_gpu_give_exactly_one_booking() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;

    let mut tasks = Vec::new();
    for _ in 0..64 {
        let client = app.client.clone();
        let url = app.url(&format!("/v1/marketplace/gpu/{gpu_id}/book"));
        let body = json!({ "gpu_id": gpu_id, "duration_hours": 1.0 });
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .header("X-Api-Key", "")
                .json(&body)
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let created = statuses.iter().filter(|s| **s == 201).count();
    let conflicts = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((created, conflicts), (1, 63), "statuses: {statuses:?}");

    assert_eq!(
        app.active_bookings(&gpu_id).await,
        1,
        "one active booking in the database"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM bookings").await,
        1,
        "one booking row (= one order)"
    );
    assert_eq!(
        app.details(&gpu_id).await["total_bookings"].as_i64(),
        Some(1)
    );
    let orders = app.get("/v1/marketplace/orders").await.expect(200).clone();
    assert_eq!(orders.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_bookings_of_different_gpus_all_succeed() {
    let app = TestApp::spawn().await;
    let mut gpus = Vec::new();
    for i in 0..16 {
        gpus.push(app.register_gpu(&format!("GPU {i}"), 0.5).await);
    }
    let mut tasks = Vec::new();
    for gpu_id in &gpus {
        let client = app.client.clone();
        let url = app.url(&format!("/v1/marketplace/gpu/{gpu_id}/book"));
        let body = json!({ "gpu_id": gpu_id, "duration_hours": 1.0 });
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .header("X-Api-Key", "")
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 201);
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM bookings WHERE status = 'active'")
            .await,
        16
    );
}

#[tokio::test]
async fn a_booked_gpu_cannot_be_booked_again() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    app.book(&gpu_id, 1.0).await;
    app.book_raw(&gpu_id, 1.0).await.expect_error(409);
    assert_eq!(app.count("SELECT COUNT(*) FROM bookings").await, 1);
}

#[tokio::test]
async fn a_released_gpu_can_be_booked_again() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    let first = app.book(&gpu_id, 1.0).await;
    app.release(&gpu_id).await;
    let second = app.book(&gpu_id, 1.0).await;
    assert_ne!(first["booking_id"], second["booking_id"]);
    assert_ne!(first["order_id"], second["order_id"]);
    assert_eq!(
        app.details(&gpu_id).await["total_bookings"].as_i64(),
        Some(2)
    );
}

#[tokio::test]
async fn booking_an_unknown_gpu_is_404() {
    let app = TestApp::spawn().await;
    app.book_raw("gpu_00000000000000000000000000000000", 1.0)
        .await
        .expect_error(404);
}

#[tokio::test]
async fn duration_out_of_range_is_400_and_books_nothing() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    for hours in [
        json!(0),
        json!(0.0),
        json!(-1),
        json!(-0.5),
        json!(8760.001),
        json!(10000),
    ] {
        let body = json!({ "gpu_id": gpu_id, "duration_hours": hours });
        let reply = app
            .post(&format!("/v1/marketplace/gpu/{gpu_id}/book"), &body)
            .await;
        assert_eq!(reply.status, 400, "duration_hours {hours}: {}", reply.text);
        common::assert_detail(&reply);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM bookings").await, 0);
    assert_eq!(app.details(&gpu_id).await["status"], "available");
}

#[tokio::test]
async fn the_longest_allowed_duration_is_8760_hours() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    let booking = app.book(&gpu_id, 8760.0).await;
    assert_eq!(micros(&booking["total_cost"]), 4_380_000_000, "0.5 × 8760");
}

#[tokio::test]
async fn a_missing_or_mistyped_duration_is_422_and_books_nothing() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    let bodies = [
        json!({ "gpu_id": gpu_id }),
        json!({ "gpu_id": gpu_id, "duration_hours": "2" }),
        json!({ "gpu_id": gpu_id, "duration_hours": null }),
        json!({ "gpu_id": gpu_id, "duration_hours": [1] }),
    ];
    for body in bodies {
        let reply = app
            .post(&format!("/v1/marketplace/gpu/{gpu_id}/book"), &body)
            .await;
        assert_eq!(reply.status, 422, "body {body}: {}", reply.text);
        common::assert_detail(&reply);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM bookings").await, 0);
}

#[tokio::test]
async fn releasing_a_gpu_that_is_not_booked_is_400() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    app.release_raw(&gpu_id).await.expect_error(400);
    app.book(&gpu_id, 1.0).await;
    app.release(&gpu_id).await;
    app.release_raw(&gpu_id).await.expect_error(400);
}

#[tokio::test]
async fn releasing_an_unknown_gpu_is_404() {
    let app = TestApp::spawn().await;
    app.release_raw("gpu_00000000000000000000000000000000")
        .await
        .expect_error(404);
}

#[tokio::test]
async fn the_total_is_computed_in_micro_units_without_float_drift() {
    // 0.333333 × 1.5 = 0.4999995 exactly; binary floats give 0.49999949999999997, which would round
    // down to 0.499999. Integer micro-units round half up to 0.500000.
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.333333).await;
    let booking = app.book(&gpu_id, 1.5).await;
    assert_eq!(micros(&booking["price_per_hour"]), 333_333);
    assert_eq!(micros(&booking["total_cost"]), 500_000);
    let row = app
        .booking_row(booking["booking_id"].as_str().unwrap())
        .await;
    assert_eq!(row.price_micro, 333_333);
    assert_eq!(row.total_micro, 500_000);
    assert_eq!(row.duration_seconds, 5_400);
}

#[tokio::test]
async fn a_release_refunds_the_unused_share_pro_rata_to_the_second() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.333333).await;
    let booking = app.book(&gpu_id, 1.5).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await; // at least one whole second used
    let released = app.release(&gpu_id).await;

    let row = app
        .booking_row(booking["booking_id"].as_str().unwrap())
        .await;
    let used_seconds = (row.ended_at.expect("ended_at recorded") - row.start_at) / 1_000_000;
    assert!(used_seconds >= 1, "used {used_seconds} s");
    let charged = pro_rata(row.total_micro, used_seconds, row.duration_seconds);
    assert_eq!(
        micros(&released["charged"]),
        charged,
        "charged = total × used / duration: {released}"
    );
    assert_eq!(micros(&released["refund"]), row.total_micro - charged);
    assert_eq!(row.charged_micro, Some(charged));
    assert_eq!(row.refund_micro, Some(row.total_micro - charged));
}

#[tokio::test]
async fn refund_plus_charge_equals_the_total_exactly_for_awkward_prices() {
    let app = TestApp::spawn().await;
    let cases = [
        (0.000001, 0.01),
        (0.123457, 7.77),
        (0.333333, 1.5),
        (1.999999, 0.333),
        (9999.999999, 8760.0),
        (0.7, 0.1),
    ];
    for (price, hours) in cases {
        let gpu_id = app.register_gpu("RTX 4090", price).await;
        let booking = app.book(&gpu_id, hours).await;
        let released = app.release(&gpu_id).await;
        common::assert_at_most_six_decimals(&booking);
        common::assert_at_most_six_decimals(&released);
        let total = micros(&booking["total_cost"]);
        assert_eq!(
            micros(&released["refund"]) + micros(&released["charged"]),
            total,
            "price {price} for {hours} h: booking {booking}, release {released}"
        );
        let row = app
            .booking_row(booking["booking_id"].as_str().unwrap())
            .await;
        assert_eq!(row.total_micro, total);
        assert_eq!(
            row.refund_micro.unwrap() + row.charged_micro.unwrap(),
            row.total_micro
        );
        assert!(row.refund_micro.unwrap() >= 0 && row.charged_micro.unwrap() >= 0);
    }
}

#[tokio::test]
async fn a_release_by_the_client_completes_the_order() {
    let app = TestApp::spawn_with_keys().await;
    let gpu_id = app
        .register_as(
            json!({ "name": "RTX 4090", "price_per_hour": 0.5 }),
            BOB_KEY,
            "bob",
        )
        .await;
    let booking = app.book_as(&gpu_id, 1.0, ALICE_KEY).await;
    app.release_raw_as(&gpu_id, ALICE_KEY).await.expect(200);

    let row = app
        .booking_row(booking["booking_id"].as_str().unwrap())
        .await;
    assert_eq!(row.status, "completed");
    assert!(row.ended_at.is_some());
}

#[tokio::test]
async fn a_release_by_the_miner_cancels_the_order_with_the_same_refund_rule() {
    let app = TestApp::spawn_with_keys().await;
    let gpu_id = app
        .register_as(
            json!({ "name": "RTX 4090", "price_per_hour": 0.5 }),
            BOB_KEY,
            "bob",
        )
        .await;
    let booking = app.book_as(&gpu_id, 1.0, ALICE_KEY).await;
    let released = app
        .release_raw_as(&gpu_id, BOB_KEY)
        .await
        .expect(200)
        .clone();
    assert_eq!(
        micros(&released["refund"]) + micros(&released["charged"]),
        500_000
    );

    let row = app
        .booking_row(booking["booking_id"].as_str().unwrap())
        .await;
    assert_eq!(row.status, "cancelled");
    assert_eq!(
        row.refund_micro.unwrap() + row.charged_micro.unwrap(),
        500_000
    );
    assert_eq!(app.details(&gpu_id).await["status"], "available");
}

#[tokio::test]
async fn a_release_by_an_admin_cancels_the_order() {
    let app = TestApp::spawn_with_keys().await;
    let gpu_id = app
        .register_as(
            json!({ "name": "RTX 4090", "price_per_hour": 0.5 }),
            BOB_KEY,
            "bob",
        )
        .await;
    let booking = app.book_as(&gpu_id, 1.0, ALICE_KEY).await;
    app.release_raw_as(&gpu_id, ADMIN_KEY).await.expect(200);
    let row = app
        .booking_row(booking["booking_id"].as_str().unwrap())
        .await;
    assert_eq!(row.status, "cancelled");
}

#[tokio::test]
async fn a_booking_that_reaches_its_end_completes_with_the_full_charge() {
    let app = TestApp::spawn().await; // sweeper every 100 ms
    let gpu_id = app.register_gpu("RTX 4090", 1.0).await;
    let booking = app.book(&gpu_id, 0.001).await; // 3.6 s
    let order_id = booking["order_id"].as_str().unwrap().to_owned();

    let active = app
        .get("/v1/marketplace/orders?status=active")
        .await
        .expect(200)
        .clone();
    assert_eq!(active.as_array().unwrap().len(), 1, "active while it runs");

    let order: Value = eventually(
        Duration::from_secs(15),
        "the short booking to complete",
        || async {
            let orders = app
                .get("/v1/marketplace/orders?status=completed")
                .await
                .expect(200)
                .clone();
            orders
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["order_id"] == order_id.as_str())
                .cloned()
        },
    )
    .await;
    assert_eq!(
        micros(&order["charged"]),
        micros(&booking["total_cost"]),
        "{order}"
    );
    assert_eq!(micros(&order["refund"]), 0, "{order}");
    assert!(order["completed_at"].is_string(), "{order}");

    let gpu = app.details(&gpu_id).await;
    assert_eq!(gpu["status"], "available", "the GPU is free again: {gpu}");
    assert!(
        gpu.get("current_booking").is_none_or(Value::is_null),
        "{gpu}"
    );
    let row = app
        .booking_row(booking["booking_id"].as_str().unwrap())
        .await;
    assert_eq!(row.charged_micro, Some(row.total_micro));
    assert_eq!(row.refund_micro, Some(0));
    assert!(
        row.ended_at.unwrap() >= row.end_at,
        "did not end before its time"
    );
}

#[tokio::test]
async fn no_booking_stays_active_past_its_end() {
    let app = TestApp::spawn().await;
    let mut gpus = Vec::new();
    for i in 0..5 {
        let gpu_id = app.register_gpu(&format!("GPU {i}"), 0.5).await;
        app.book(&gpu_id, 0.0005).await; // 1.8 s
        gpus.push(gpu_id);
    }
    eventually(
        Duration::from_secs(15),
        "every short booking to end",
        || async {
            let active = app
                .count("SELECT COUNT(*) FROM bookings WHERE status = 'active'")
                .await;
            (active == 0).then_some(())
        },
    )
    .await;
    for gpu_id in &gpus {
        assert_eq!(app.details(gpu_id).await["status"], "available");
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM bookings WHERE status = 'completed'")
            .await,
        5
    );
}

#[tokio::test]
async fn a_release_racing_the_sweeper_ends_the_booking_once() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 1.0).await;
    let booking = app.book(&gpu_id, 0.0005).await; // 1.8 s
    let booking_id = booking["booking_id"].as_str().unwrap().to_owned();
    // Release right around the end: either the release (200) or the sweeper ends it, never both.
    tokio::time::sleep(Duration::from_millis(1_750)).await;
    let reply = app.release_raw(&gpu_id).await;
    assert!(reply.status == 200 || reply.status == 400, "{}", reply.text);

    eventually(Duration::from_secs(10), "the booking to end", || async {
        (app.booking_row(&booking_id).await.status != "active").then_some(())
    })
    .await;
    let row = app.booking_row(&booking_id).await;
    assert_eq!(row.status, "completed");
    if reply.status == 200 {
        assert_eq!(
            row.charged_micro,
            Some(micros(&reply.body["charged"])),
            "the release's split stays"
        );
    } else {
        assert_eq!(row.charged_micro, Some(row.total_micro));
    }
    assert_eq!(
        row.refund_micro.unwrap() + row.charged_micro.unwrap(),
        row.total_micro
    );
}

/// Two miners, two clients: bob's GPU booked by alice, dave's by carol.
async fn two_markets(app: &TestApp) -> (Value, Value) {
    let bob_gpu = app
        .register_as(
            json!({ "name": "RTX 4090", "price_per_hour": 0.5 }),
            BOB_KEY,
            "bob",
        )
        .await;
    let dave_gpu = app
        .register_as(
            json!({ "name": "A100", "price_per_hour": 2.0 }),
            DAVE_KEY,
            "dave",
        )
        .await;
    let alice = app.book_as(&bob_gpu, 1.0, ALICE_KEY).await;
    let carol = app.book_as(&dave_gpu, 2.0, CAROL_KEY).await;
    (alice, carol)
}

async fn order_ids(app: &TestApp, query: &str, key: &str) -> Vec<String> {
    let reply = app
        .get_as(&format!("/v1/marketplace/orders{query}"), key)
        .await;
    reply
        .expect(200)
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_client_sees_only_its_own_orders() {
    let app = TestApp::spawn_with_keys().await;
    let (alice, carol) = two_markets(&app).await;
    assert_eq!(
        order_ids(&app, "", ALICE_KEY).await,
        vec![alice["order_id"].as_str().unwrap().to_owned()]
    );
    assert_eq!(
        order_ids(&app, "", CAROL_KEY).await,
        vec![carol["order_id"].as_str().unwrap().to_owned()]
    );
}

#[tokio::test]
async fn a_miner_sees_the_orders_on_its_gpus() {
    let app = TestApp::spawn_with_keys().await;
    let (alice, carol) = two_markets(&app).await;
    assert_eq!(
        order_ids(&app, "", BOB_KEY).await,
        vec![alice["order_id"].as_str().unwrap().to_owned()]
    );
    assert_eq!(
        order_ids(&app, "", DAVE_KEY).await,
        vec![carol["order_id"].as_str().unwrap().to_owned()]
    );
}

#[tokio::test]
async fn an_admin_sees_all_orders_newest_first() {
    let app = TestApp::spawn_with_keys().await;
    let (alice, carol) = two_markets(&app).await;
    let expected = vec![
        carol["order_id"].as_str().unwrap().to_owned(),
        alice["order_id"].as_str().unwrap().to_owned(),
    ];
    assert_eq!(order_ids(&app, "", ADMIN_KEY).await, expected);
}

#[tokio::test]
async fn the_status_filter_of_orders_keeps_that_status() {
    let app = TestApp::spawn_with_keys().await;
    let (alice, carol) = two_markets(&app).await;
    let bob_gpu = alice["gpu_id"].as_str().unwrap().to_owned();
    app.release_raw_as(&bob_gpu, ALICE_KEY).await.expect(200);

    let alice_order = alice["order_id"].as_str().unwrap().to_owned();
    let carol_order = carol["order_id"].as_str().unwrap().to_owned();
    assert_eq!(
        order_ids(&app, "?status=active", ADMIN_KEY).await,
        vec![carol_order]
    );
    assert_eq!(
        order_ids(&app, "?status=completed", ADMIN_KEY).await,
        vec![alice_order.clone()]
    );
    assert!(
        order_ids(&app, "?status=cancelled", ADMIN_KEY)
            .await
            .is_empty()
    );
    assert!(
        order_ids(&app, "?status=expired", ADMIN_KEY)
            .await
            .is_empty()
    );
    assert_eq!(
        order_ids(&app, "?status=completed", ALICE_KEY).await,
        vec![alice_order]
    );
    assert!(
        order_ids(&app, "?status=completed", CAROL_KEY)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn orders_paginate_newest_first() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    let mut created = Vec::new();
    for _ in 0..7 {
        let booking = app.book(&gpu_id, 1.0).await;
        created.push(booking["order_id"].as_str().unwrap().to_owned());
        app.release(&gpu_id).await;
    }
    created.reverse();
    let all = order_ids(&app, "", "").await;
    assert_eq!(all, created);
    let mut paged = order_ids(&app, "?limit=3", "").await;
    paged.extend(order_ids(&app, "?limit=3&offset=3", "").await);
    paged.extend(order_ids(&app, "?limit=3&offset=6", "").await);
    assert_eq!(paged, created);
    app.get("/v1/marketplace/orders?limit=0")
        .await
        .expect_error(400);
    app.get("/v1/marketplace/orders?limit=501")
        .await
        .expect_error(400);
}

#[tokio::test]
async fn an_unknown_order_status_filter_is_rejected() {
    let app = TestApp::spawn().await;
    let reply = app.get("/v1/marketplace/orders?status=bogus").await;
    assert!(
        reply.status == 400 || reply.status == 422,
        "{} {}",
        reply.status,
        reply.text
    );
    common::assert_detail(&reply);
}

// ---- the booking-timeout policy drives expiry --------------------------------------------------

/// Answers like the built-in policies, except for the booking-timeout decision.
struct TimeoutPolicy(fn(&TimeoutRequest) -> Option<TimeoutAction>);

#[async_trait::async_trait]
impl Policies for TimeoutPolicy {
    async fn quote(&self, request: PricingRequest) -> PriceQuote {
        BuiltinPolicies.quote(request).await
    }

    async fn quote_batch(&self, requests: Vec<PricingRequest>) -> Vec<PriceQuote> {
        BuiltinPolicies.quote_batch(requests).await
    }

    async fn booking_timeout(&self, request: TimeoutRequest) -> TimeoutDecision {
        match (self.0)(&request) {
            Some(action) => TimeoutDecision {
                action,
                reason: "test policy".to_owned(),
                source: DecisionSource::new("test-timeout", false),
            },
            None => BuiltinPolicies.booking_timeout(request).await,
        }
    }

    async fn moderate(&self, request: ModerationRequest) -> ModerationDecision {
        BuiltinPolicies.moderate(request).await
    }
}

/// Expires a booking once its GPU has been silent for 2 s.
fn expire_on_heartbeat_loss(request: &TimeoutRequest) -> Option<TimeoutAction> {
    let last = request.last_heartbeat_unix?;
    (request.now_unix - last >= 2).then_some(TimeoutAction::Expire)
}

#[tokio::test]
async fn a_booking_whose_gpu_loses_its_heartbeat_expires_early_with_a_pro_rata_refund() {
    let app =
        TestApp::spawn_with_policies(Arc::new(TimeoutPolicy(expire_on_heartbeat_loss)), |_| {})
            .await;
    let gpu_id = app.register_gpu("RTX 4090", 0.9).await;
    app.heartbeat(&gpu_id).await.expect(200);
    let booking = app.book(&gpu_id, 1.0).await;
    let order_id = booking["order_id"].as_str().unwrap().to_owned();

    let order: Value = eventually(Duration::from_secs(15), "the booking to expire", || async {
        let orders = app
            .get("/v1/marketplace/orders?status=expired")
            .await
            .expect(200)
            .clone();
        orders
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["order_id"] == order_id.as_str())
            .cloned()
    })
    .await;
    assert!(order["completed_at"].is_string(), "{order}");

    let row = app
        .booking_row(booking["booking_id"].as_str().unwrap())
        .await;
    assert_eq!(row.status, "expired");
    let used_seconds = (row.ended_at.unwrap() - row.start_at) / 1_000_000;
    let charged = pro_rata(row.total_micro, used_seconds, row.duration_seconds);
    assert_eq!(
        row.charged_micro,
        Some(charged),
        "charged for the {used_seconds} s used"
    );
    assert_eq!(row.refund_micro, Some(row.total_micro - charged));
    assert_eq!(micros(&order["charged"]), charged);
    assert_eq!(micros(&order["refund"]), row.total_micro - charged);
    assert!(row.ended_at.unwrap() < row.end_at, "expired before its end");

    assert_ne!(app.details(&gpu_id).await["status"], "booked");
    app.heartbeat(&gpu_id).await.expect(200);
    assert_eq!(
        app.details(&gpu_id).await["status"],
        "available",
        "bookable again once it is back"
    );
    app.book(&gpu_id, 1.0).await;
}

#[tokio::test]
async fn a_policy_that_keeps_a_booking_cannot_keep_it_past_its_end() {
    let app = TestApp::spawn_with_policies(
        Arc::new(TimeoutPolicy(|_| Some(TimeoutAction::Keep))),
        |_| {},
    )
    .await;
    let gpu_id = app.register_gpu("RTX 4090", 1.0).await;
    let booking = app.book(&gpu_id, 0.0005).await; // 1.8 s
    let booking_id = booking["booking_id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(15), "the booking to end", || async {
        (app.booking_row(&booking_id).await.status != "active").then_some(())
    })
    .await;
    let row = app.booking_row(&booking_id).await;
    assert_eq!(row.status, "completed");
    assert_eq!(row.charged_micro, Some(row.total_micro));
}

/// Extends every booking once by one minute in its last second.
fn extend_once_at_the_end(request: &TimeoutRequest) -> Option<TimeoutAction> {
    (request.extensions == 0 && request.now_unix + 1 >= request.end_unix)
        .then_some(TimeoutAction::Extend(1))
}

#[tokio::test]
async fn a_policy_extension_moves_the_end_and_bills_the_extra_minutes_at_the_locked_price() {
    let app =
        TestApp::spawn_with_policies(Arc::new(TimeoutPolicy(extend_once_at_the_end)), |_| {}).await;
    let gpu_id = app.register_gpu("RTX 4090", 0.6).await;
    let booking = app.book(&gpu_id, 0.0005).await; // about 2 s
    let booking_id = booking["booking_id"].as_str().unwrap().to_owned();
    let before = app.booking_row(&booking_id).await;

    let after = eventually(
        Duration::from_secs(15),
        "the booking to be extended",
        || async {
            let row = app.booking_row(&booking_id).await;
            (row.end_at != before.end_at).then_some(row)
        },
    )
    .await;
    assert_eq!(after.status, "active");
    assert_eq!(
        after.end_at,
        before.end_at + 60 * 1_000_000,
        "one minute more"
    );
    assert_eq!(
        after.total_micro,
        before.total_micro + 10_000,
        "one minute at 0.6/h is 0.01"
    );
    let current = &app.details(&gpu_id).await["current_booking"];
    assert_eq!(
        common::assert_timestamp(&current["end_time"]),
        after.end_at,
        "{current}"
    );

    let released = app.release(&gpu_id).await;
    assert_eq!(
        micros(&released["refund"]) + micros(&released["charged"]),
        after.total_micro
    );
}
