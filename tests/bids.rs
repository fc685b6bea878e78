//! Bids for capacity: placed, listed by their owner (an admin sees all), cancelled by their owner or
//! an admin, and counted in `activeBids` only while open.

mod common;

use common::{ADMIN_KEY, ALICE_KEY, BOB_KEY, CAROL_KEY, TestApp};
use serde_json::{Value, json};

async fn place(app: &TestApp, key: &str, capacity: i64) -> String {
    let reply = app
        .post_as(
            "/v1/marketplace/bids",
            &json!({ "gpu_model": "RTX 4090", "capacity": capacity, "price": 0.5, "notes": "batch jobs" }),
            key,
        )
        .await;
    common::assert_id(&reply.expect(202)["id"], "bid_")
}

async fn bids(app: &TestApp, query: &str, key: &str) -> Vec<Value> {
    app.get_as(&format!("/v1/marketplace/bids{query}"), key)
        .await
        .expect(200)
        .as_array()
        .unwrap()
        .clone()
}

fn ids(list: &[Value]) -> Vec<&str> {
    list.iter().map(|b| b["id"].as_str().unwrap()).collect()
}

async fn active_bids(app: &TestApp) -> i64 {
    app.get("/v1/marketplace/stats").await.expect(200)["activeBids"]
        .as_i64()
        .unwrap()
}

async fn cancel(app: &TestApp, id: &str, key: &str) -> common::Reply {
    app.post_empty_as(&format!("/v1/marketplace/bids/{id}/cancel"), key)
        .await
}

#[tokio::test]
async fn clients_list_their_own_bids_newest_first_and_admins_see_all() {
    let app = TestApp::spawn_with_keys().await;
    let first = place(&app, ALICE_KEY, 2).await;
    let other = place(&app, CAROL_KEY, 1).await;
    let second = place(&app, ALICE_KEY, 4).await;

    let mine = bids(&app, "", ALICE_KEY).await;
    assert_eq!(ids(&mine), [second.as_str(), first.as_str()]);
    let bid = &mine[0];
    assert_eq!(bid["client_id"], "alice");
    assert_eq!(bid["status"], "pending");
    assert_eq!(bid["capacity"].as_i64(), Some(4));
    assert_eq!(bid["price"].as_f64(), Some(0.5));
    assert_eq!(bid["gpu_model"], "RTX 4090");
    assert_eq!(bid["notes"], "batch jobs");
    common::assert_timestamp(&bid["created_at"]);

    assert_eq!(ids(&bids(&app, "", CAROL_KEY).await), [other.as_str()]);
    assert!(
        bids(&app, "", BOB_KEY).await.is_empty(),
        "a miner has no bids"
    );
    assert_eq!(bids(&app, "", ADMIN_KEY).await.len(), 3);
    assert_eq!(
        ids(&bids(&app, "?limit=1&offset=1", ALICE_KEY).await),
        [first.as_str()]
    );
    app.get_as("/v1/marketplace/bids", "")
        .await
        .expect_error(401);
    app.get_as("/v1/marketplace/bids?status=lost", ALICE_KEY)
        .await
        .expect_error(400);
    app.get_as("/v1/marketplace/bids?limit=0", ALICE_KEY)
        .await
        .expect_error(400);
}

#[tokio::test]
async fn a_cancelled_bid_stops_counting_as_active() {
    let app = TestApp::spawn_with_keys().await;
    let kept = place(&app, ALICE_KEY, 1).await;
    let withdrawn = place(&app, ALICE_KEY, 2).await;
    let carols = place(&app, CAROL_KEY, 3).await;
    assert_eq!(active_bids(&app).await, 3);

    let reply = cancel(&app, &withdrawn, ALICE_KEY).await;
    let body = reply.expect(200);
    assert_eq!(body["id"], withdrawn.as_str());
    assert_eq!(body["status"], "cancelled");
    assert_eq!(active_bids(&app).await, 2);

    // Once: a second cancel is a conflict and changes nothing.
    cancel(&app, &withdrawn, ALICE_KEY).await.expect_error(409);
    assert_eq!(active_bids(&app).await, 2);

    assert_eq!(
        ids(&bids(&app, "?status=pending", ALICE_KEY).await),
        [kept.as_str()]
    );
    assert_eq!(
        ids(&bids(&app, "?status=cancelled", ALICE_KEY).await),
        [withdrawn.as_str()]
    );

    // Someone else's bid: 403 for another client or a miner, allowed for an admin.
    cancel(&app, &carols, ALICE_KEY).await.expect_error(403);
    cancel(&app, &carols, BOB_KEY).await.expect_error(403);
    cancel(&app, &carols, "").await.expect_error(401);
    assert_eq!(active_bids(&app).await, 2);
    cancel(&app, &carols, ADMIN_KEY).await.expect(200);
    assert_eq!(active_bids(&app).await, 1);

    cancel(&app, "bid_unknown", ADMIN_KEY)
        .await
        .expect_error(404);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM bids WHERE status = 'cancelled'")
            .await,
        2
    );
}

#[tokio::test]
async fn local_mode_lists_and_cancels_the_local_principals_bids() {
    let app = TestApp::spawn().await;
    let id = place(&app, "", 1).await;
    assert_eq!(ids(&bids(&app, "", "").await), [id.as_str()]);
    cancel(&app, &id, "").await.expect(200);
    assert_eq!(active_bids(&app).await, 0);
}
