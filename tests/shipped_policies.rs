//! The booking, sweeper and review stories over HTTP on the shipped WebAssembly policies
//! (`policies/`: pricing-demand, booking-timeout-grace, review-moderation-basic), where the rest of the
//! suite runs the built-in rules. What the built-in tests pin as exact prices here becomes the rules
//! that hold whatever the pricing policy says: the total is the locked price pro rata, refund plus
//! charge is the total, one booking per GPU. Then the moderation policy's verdicts and the admin queue.

mod common;

use std::time::Duration;

use common::{ADMIN_KEY, ALICE_KEY, BOB_KEY, CAROL_KEY, TestApp, eventually, micros, pro_rata};
use serde_json::{Value, json};

async fn shipped() -> TestApp {
    TestApp::spawn_with_shipped_policies(|_| {}).await
}

async fn shipped_with_keys() -> TestApp {
    TestApp::spawn_with_shipped_policies(|config| config.keys = common::test_keys()).await
}

fn assert_priced_by(booking: &Value, module: &str) {
    let policy = booking["pricing"]["policy"].as_str().unwrap_or_default();
    assert!(policy.starts_with(&format!("{module}@")), "{booking}");
    assert_eq!(booking["pricing"]["fallback"], false, "{booking}");
}

// ---- booking ------------------------------------------------------------------------------------

#[tokio::test]
async fn a_booking_is_priced_by_the_pricing_policy_and_billed_exactly() {
    let app = shipped().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.333333).await;
    let booking = app.book(&gpu_id, 1.5).await;
    assert_priced_by(&booking, "pricing-demand.wasm");
    let multiplier = booking["pricing"]["multiplier"].as_f64().unwrap();
    // policies.toml's guardrails: multiplier within [0.5, 3.0].
    assert!((0.5..=3.0).contains(&multiplier), "{booking}");
    let price = micros(&booking["price_per_hour"]);
    assert_eq!(
        micros(&booking["total_cost"]),
        pro_rata(price, 5_400, 3_600)
    );
    for money in ["price_per_hour", "total_cost"] {
        common::assert_at_most_six_decimals(&booking[money]);
    }

    let row = app
        .booking_row(booking["booking_id"].as_str().unwrap())
        .await;
    assert_eq!((row.price_micro, row.duration_seconds), (price, 5_400));
    assert_eq!(row.total_micro, micros(&booking["total_cost"]));

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let released = app.release(&gpu_id).await;
    let row = app
        .booking_row(booking["booking_id"].as_str().unwrap())
        .await;
    let used_seconds = (row.ended_at.expect("ended") - row.start_at) / 1_000_000;
    let charged = pro_rata(row.total_micro, used_seconds, row.duration_seconds);
    assert_eq!(micros(&released["charged"]), charged, "{released}");
    assert_eq!(
        micros(&released["refund"]) + micros(&released["charged"]),
        row.total_micro
    );
    assert_eq!(row.status, "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_bookings_of_one_gpu_give_exactly_one_booking() {
    let app = shipped().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let client = app.client.clone();
        let url = app.url(&format!("/v1/marketplace/gpu/{gpu_id}/book"));
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .header("X-Api-Key", "")
                .json(&json!({ "duration_hours": 1.0 }))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let created = statuses.iter().filter(|s| **s == 201).count();
    let conflicts = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((created, conflicts), (1, 15), "{statuses:?}");
    assert_eq!(app.active_bookings(&gpu_id).await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM bookings").await, 1);
}

#[tokio::test]
async fn demand_raises_the_price_of_a_busy_model() {
    let app = shipped().await;
    let mut gpus = Vec::new();
    for _ in 0..4 {
        gpus.push(app.register_gpu("RTX 4090", 1.0).await);
    }
    let first = app.book(&gpus[0], 1.0).await;
    app.book(&gpus[1], 1.0).await;
    app.book(&gpus[2], 1.0).await;
    let last = app.book(&gpus[3], 1.0).await;
    assert_priced_by(&last, "pricing-demand.wasm");
    assert!(
        micros(&last["price_per_hour"]) > micros(&first["price_per_hour"]),
        "the fourth booking of four GPUs costs more than the first: {first} {last}"
    );
}

// ---- the sweeper and the booking-timeout policy ---------------------------------------------------

#[tokio::test]
async fn a_booking_without_a_job_completes_at_its_end_with_the_full_charge() {
    let app = shipped().await;
    let gpu_id = app.register_gpu("RTX 4090", 1.0).await;
    let booking = app.book(&gpu_id, 0.0005).await; // 1.8 s
    let booking_id = booking["booking_id"].as_str().unwrap().to_owned();
    let row = eventually(Duration::from_secs(15), "the booking to end", || async {
        let row = app.booking_row(&booking_id).await;
        (row.status != "active").then_some(row)
    })
    .await;
    assert_eq!(row.status, "completed");
    assert_eq!(row.charged_micro, Some(row.total_micro));
    assert_eq!(row.refund_micro, Some(0));
    assert!(row.ended_at.unwrap() >= row.end_at, "not before its end");
    assert_eq!(app.details(&gpu_id).await["status"], "available");
}

#[tokio::test]
async fn a_running_job_with_a_heartbeat_gets_a_grace_period_that_is_not_billed() {
    let app = shipped().await;
    let gpu_id = app.register_gpu("RTX 4090", 1.0).await;
    let booking = app
        .post(
            &format!("/v1/marketplace/gpu/{gpu_id}/book"),
            &json!({ "duration_hours": 0.0005, "job_id": "train-42" }),
        )
        .await
        .expect(201)
        .clone();
    app.heartbeat(&gpu_id).await.expect(200);
    let booking_id = booking["booking_id"].as_str().unwrap().to_owned();
    // booking-timeout-grace: a job is set and the GPU heartbeated within 10 minutes, so the end
    // brings a grace period (15 minutes) instead of the end of the booking.
    eventually(Duration::from_secs(15), "a grace period", || async {
        let graced = app
            .count(&format!(
                "SELECT COUNT(*) FROM bookings WHERE id = '{booking_id}' AND grace_until IS NOT NULL \
                 AND status = 'active' AND extensions = 1"
            ))
            .await;
        (graced == 1).then_some(())
    })
    .await;
    let released = app.release(&gpu_id).await;
    assert_eq!(
        micros(&released["charged"]),
        micros(&booking["total_cost"]),
        "the grace period is free: {released}"
    );
    assert_eq!(micros(&released["refund"]), 0, "{released}");
}

// ---- reviews and the moderation policy -------------------------------------------------------------

/// A GPU of Bob's that Alice booked and released, so her reviews of it count as from a customer.
async fn gpu_alice_used(app: &TestApp) -> String {
    let gpu_id = app
        .register_as(
            json!({ "name": "RTX 4090", "price_per_hour": 0.5 }),
            BOB_KEY,
            "bob",
        )
        .await;
    app.book_as(&gpu_id, 1.0, ALICE_KEY).await;
    app.release_raw_as(&gpu_id, ALICE_KEY).await.expect(200);
    gpu_id
}

async fn review_as(
    app: &TestApp,
    gpu_id: &str,
    key: &str,
    rating: u8,
    comment: &str,
) -> common::Reply {
    app.post_as(
        &format!("/v1/marketplace/gpu/{gpu_id}/reviews"),
        &json!({ "rating": rating, "comment": comment }),
        key,
    )
    .await
}

async fn listed(app: &TestApp, gpu_id: &str) -> Value {
    app.get(&format!("/v1/marketplace/gpu/{gpu_id}/reviews"))
        .await
        .expect(200)
        .clone()
}

async fn queue(app: &TestApp, query: &str) -> Vec<Value> {
    app.get_as(&format!("/v1/admin/reviews{query}"), ADMIN_KEY)
        .await
        .expect(200)
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_customers_ordinary_review_is_accepted_and_counted() {
    let app = shipped_with_keys().await;
    let gpu_id = gpu_alice_used(&app).await;
    let reply = review_as(&app, &gpu_id, ALICE_KEY, 4, "Fast and stable.").await;
    let body = reply.expect(201);
    assert_eq!(body["status"], "review_added", "{body}");
    assert_eq!(body["moderation"]["decision"], "accept", "{body}");
    assert_eq!(body["total_reviews"].as_i64(), Some(1), "{body}");
    let list = listed(&app, &gpu_id).await;
    assert_eq!(list["total_reviews"].as_i64(), Some(1), "{list}");
    assert_eq!(list["average_rating"].as_f64(), Some(4.0), "{list}");
}

#[tokio::test]
async fn reviews_from_non_customers_and_with_flag_words_wait_for_an_admin() {
    let app = shipped_with_keys().await;
    let gpu_id = gpu_alice_used(&app).await;
    // Carol never booked this GPU.
    let stranger = review_as(&app, &gpu_id, CAROL_KEY, 1, "Terrible.").await;
    let body = stranger.expect(201).clone();
    assert_eq!(body["status"], "review_flagged", "{body}");
    assert_eq!(body["moderation"]["decision"], "flag", "{body}");
    assert!(
        body["moderation"]["reason"]
            .as_str()
            .unwrap()
            .contains("no completed booking"),
        "{body}"
    );
    // Alice did, but names a flag word.
    let worded = review_as(&app, &gpu_id, ALICE_KEY, 2, "Looks like a scam to me").await;
    let worded = worded.expect(201).clone();
    assert_eq!(worded["status"], "review_flagged", "{worded}");

    // Neither is shown nor counted.
    let list = listed(&app, &gpu_id).await;
    assert_eq!(list["total_reviews"].as_i64(), Some(0), "{list}");
    assert!(list["reviews"].as_array().unwrap().is_empty(), "{list}");
    assert_eq!(
        app.details(&gpu_id).await["total_reviews"].as_i64(),
        Some(0)
    );

    // Both wait in the admin queue (flagged is the default filter), newest first.
    let flagged = queue(&app, "").await;
    let ids: Vec<&str> = flagged
        .iter()
        .map(|r| r["review_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            worded["review_id"].as_str().unwrap(),
            body["review_id"].as_str().unwrap()
        ]
    );
    assert!(flagged.iter().all(|r| r["status"] == "flagged"));
    assert_eq!(queue(&app, "?status=FLAGGED").await.len(), 2);
}

#[tokio::test]
async fn spam_and_over_long_comments_are_rejected_with_the_reason_and_stored_nowhere() {
    let app = shipped_with_keys().await;
    let gpu_id = gpu_alice_used(&app).await;
    let links = "see http://a.example http://b.example https://c.example";
    let reply = review_as(&app, &gpu_id, ALICE_KEY, 5, links).await;
    reply.expect_error(400);
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("review rejected") && detail.contains("links"),
        "{detail}"
    );

    assert_eq!(app.count("SELECT COUNT(*) FROM reviews").await, 0);
    assert!(queue(&app, "").await.is_empty());
    assert!(queue(&app, "?status=rejected").await.is_empty());
    assert_eq!(
        listed(&app, &gpu_id).await["total_reviews"].as_i64(),
        Some(0)
    );
}

#[tokio::test]
async fn an_admin_approves_a_flagged_review_and_it_counts_from_then_on() {
    let app = shipped_with_keys().await;
    let gpu_id = gpu_alice_used(&app).await;
    let flagged = review_as(&app, &gpu_id, CAROL_KEY, 2, "Slow.").await;
    let review_id = flagged.expect(201)["review_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let approved = app
        .post_empty_as(&format!("/v1/admin/reviews/{review_id}/approve"), ADMIN_KEY)
        .await;
    let approved = approved.expect(200);
    assert_eq!(approved["status"], "accepted", "{approved}");
    assert_eq!(approved["review_id"], review_id.as_str());

    let list = listed(&app, &gpu_id).await;
    assert_eq!(list["total_reviews"].as_i64(), Some(1), "{list}");
    assert_eq!(list["average_rating"].as_f64(), Some(2.0), "{list}");
    assert_eq!(list["reviews"][0]["review_id"], review_id.as_str());
    assert!(queue(&app, "").await.is_empty());
    assert_eq!(queue(&app, "?status=accepted").await.len(), 1);

    // Decided once: a second decision is a conflict and changes nothing.
    for action in ["approve", "reject"] {
        app.post_empty_as(
            &format!("/v1/admin/reviews/{review_id}/{action}"),
            ADMIN_KEY,
        )
        .await
        .expect_error(409);
    }
    assert_eq!(
        listed(&app, &gpu_id).await["total_reviews"].as_i64(),
        Some(1)
    );
}

#[tokio::test]
async fn an_admin_rejects_a_flagged_review_and_it_never_counts() {
    let app = shipped_with_keys().await;
    let gpu_id = gpu_alice_used(&app).await;
    let flagged = review_as(&app, &gpu_id, CAROL_KEY, 1, "Bad.").await;
    let review_id = flagged.expect(201)["review_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let rejected = app
        .post_empty_as(&format!("/v1/admin/reviews/{review_id}/reject"), ADMIN_KEY)
        .await;
    assert_eq!(rejected.expect(200)["status"], "rejected");
    assert_eq!(
        listed(&app, &gpu_id).await["total_reviews"].as_i64(),
        Some(0)
    );
    assert!(queue(&app, "").await.is_empty());
    let rejected = queue(&app, "?status=rejected").await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["review_id"], review_id.as_str());
    app.post_empty_as(&format!("/v1/admin/reviews/{review_id}/approve"), ADMIN_KEY)
        .await
        .expect_error(409);
    assert_eq!(
        listed(&app, &gpu_id).await["total_reviews"].as_i64(),
        Some(0)
    );
}

#[tokio::test]
async fn the_moderation_queue_is_for_admins_and_unknown_reviews_are_404() {
    let app = shipped_with_keys().await;
    for key in [ALICE_KEY, BOB_KEY] {
        app.get_as("/v1/admin/reviews", key).await.expect_error(403);
        app.post_empty_as("/v1/admin/reviews/rv_nope/approve", key)
            .await
            .expect_error(403);
    }
    app.get_as("/v1/admin/reviews", "").await.expect_error(401);
    app.get_as("/v1/admin/reviews?status=lost", ADMIN_KEY)
        .await
        .expect_error(400);
    for action in ["approve", "reject"] {
        app.post_empty_as(&format!("/v1/admin/reviews/rv_nope/{action}"), ADMIN_KEY)
            .await
            .expect_error(404);
    }
}
