//! The GPU catalogue: every list filter and sort, pagination, details, delete and heartbeat liveness.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{TestApp, eventually, ids_of, micros};
use serde_json::json;

/// Five GPUs with distinct attributes, registered by three miners.
struct Catalogue {
    rtx4090_eu: String, // "RTX 4090", 24 GB, 0.5, eu, m1, [cuda, llm]
    rtx4090_us: String, // "rtx-4090", 24 GB, 0.6, us, m2, [cuda]
    rtx3090: String,    // "RTX 3090", 24 GB, 0.3, eu, m1, [gaming]
    a100: String,       // "A100", 80 GB, 2.0, us, m2, [llm, training]
    h100: String,       // "H100 SXM", 80 GB, 3.5, ap, m3, [training]
}

impl Catalogue {
    async fn register(app: &TestApp) -> Self {
        let gpu = |name: &str, memory: u32, price: f64, region: &str, caps: &[&str]| {
            json!({
                "name": name, "memory_gb": memory, "price_per_hour": price,
                "region": region, "capabilities": caps,
            })
        };
        Self {
            rtx4090_eu: app
                .register_as(gpu("RTX 4090", 24, 0.5, "eu", &["cuda", "llm"]), "", "m1")
                .await,
            rtx4090_us: app
                .register_as(gpu("rtx-4090", 24, 0.6, "us", &["cuda"]), "", "m2")
                .await,
            rtx3090: app
                .register_as(gpu("RTX 3090", 24, 0.3, "eu", &["gaming"]), "", "m1")
                .await,
            a100: app
                .register_as(gpu("A100", 80, 2.0, "us", &["llm", "training"]), "", "m2")
                .await,
            h100: app
                .register_as(gpu("H100 SXM", 80, 3.5, "ap", &["training"]), "", "m3")
                .await,
        }
    }

    fn all(&self) -> Vec<String> {
        vec![
            self.rtx4090_eu.clone(),
            self.rtx4090_us.clone(),
            self.rtx3090.clone(),
            self.a100.clone(),
            self.h100.clone(),
        ]
    }
}

fn set(ids: &[&String]) -> HashSet<String> {
    ids.iter().map(|id| (*id).clone()).collect()
}

async fn list_set(app: &TestApp, query: &str) -> HashSet<String> {
    let ids = app.list_ids(query).await;
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "duplicates in {query}: {ids:?}");
    unique
}

#[tokio::test]
async fn available_true_lists_only_available_gpus_and_false_only_the_others() {
    let app = TestApp::spawn().await;
    let c = Catalogue::register(&app).await;
    app.book(&c.a100, 1.0).await;

    let mut available = set(&[&c.rtx4090_eu, &c.rtx4090_us, &c.rtx3090, &c.h100]);
    assert_eq!(list_set(&app, "?available=true").await, available);
    assert_eq!(list_set(&app, "?available=false").await, set(&[&c.a100]));
    available.insert(c.a100.clone());
    assert_eq!(
        list_set(&app, "").await,
        available,
        "no filter lists everything"
    );
}

#[tokio::test]
async fn model_without_wildcards_matches_a_case_insensitive_substring() {
    let app = TestApp::spawn().await;
    let c = Catalogue::register(&app).await;
    assert_eq!(
        list_set(&app, "?model=rtx").await,
        set(&[&c.rtx4090_eu, &c.rtx4090_us, &c.rtx3090])
    );
    assert_eq!(
        list_set(&app, "?model=4090").await,
        set(&[&c.rtx4090_eu, &c.rtx4090_us])
    );
    assert_eq!(list_set(&app, "?model=a100").await, set(&[&c.a100]));
    assert_eq!(list_set(&app, "?model=sxm").await, set(&[&c.h100]));
}

#[tokio::test]
async fn model_rtx4090_matches_rtx_space_4090_and_rtx_dash_4090() {
    let app = TestApp::spawn().await;
    let c = Catalogue::register(&app).await;
    let both = set(&[&c.rtx4090_eu, &c.rtx4090_us]);
    assert_eq!(list_set(&app, "?model=RTX4090").await, both);
    assert_eq!(list_set(&app, "?model=RTX%204090").await, both);
    assert_eq!(list_set(&app, "?model=rtx-4090").await, both);
    assert_eq!(list_set(&app, "?model=Rtx4090").await, both);
}

#[tokio::test]
async fn model_wildcards_star_and_question_mark_match() {
    let app = TestApp::spawn().await;
    let c = Catalogue::register(&app).await;
    assert_eq!(
        list_set(&app, "?model=RTX*").await,
        set(&[&c.rtx4090_eu, &c.rtx4090_us, &c.rtx3090])
    );
    assert_eq!(
        list_set(&app, "?model=*4090").await,
        set(&[&c.rtx4090_eu, &c.rtx4090_us])
    );
    assert_eq!(
        list_set(&app, "?model=RTX?090").await,
        set(&[&c.rtx4090_eu, &c.rtx4090_us, &c.rtx3090])
    );
    assert_eq!(
        list_set(&app, "?model=*100*").await,
        set(&[&c.a100, &c.h100])
    );
    assert_eq!(list_set(&app, "?model=A1?0").await, set(&[&c.a100]));
}

#[tokio::test]
async fn model_wildcard_patterns_match_the_whole_model_name() {
    let app = TestApp::spawn().await;
    let c = Catalogue::register(&app).await;
    // With a wildcard the pattern is anchored: `4090*` does not match "RTX 4090".
    assert!(list_set(&app, "?model=4090*").await.is_empty());
    assert_eq!(list_set(&app, "?model=H100*").await, set(&[&c.h100]));
}

#[tokio::test]
async fn memory_min_keeps_gpus_with_at_least_that_memory() {
    let app = TestApp::spawn().await;
    let c = Catalogue::register(&app).await;
    assert_eq!(
        list_set(&app, "?memory_min=30").await,
        set(&[&c.a100, &c.h100])
    );
    assert_eq!(
        list_set(&app, "?memory_min=24").await.len(),
        5,
        "the bound is inclusive"
    );
    assert!(list_set(&app, "?memory_min=100").await.is_empty());
}

#[tokio::test]
async fn price_max_keeps_gpus_whose_current_price_is_at_most_that() {
    let app = TestApp::spawn().await;
    let c = Catalogue::register(&app).await;
    assert_eq!(
        list_set(&app, "?price_max=0.5").await,
        set(&[&c.rtx4090_eu, &c.rtx3090])
    );
    assert_eq!(list_set(&app, "?price_max=2").await.len(), 4);
    for gpu in app
        .get("/v1/marketplace/gpu/list?price_max=0.6")
        .await
        .expect(200)
        .as_array()
        .unwrap()
    {
        assert!(micros(&gpu["current_price"]) <= 600_000, "{gpu}");
    }
}

#[tokio::test]
async fn region_filter_keeps_that_region() {
    let app = TestApp::spawn().await;
    let c = Catalogue::register(&app).await;
    assert_eq!(
        list_set(&app, "?region=eu").await,
        set(&[&c.rtx4090_eu, &c.rtx3090])
    );
    assert_eq!(list_set(&app, "?region=ap").await, set(&[&c.h100]));
    assert!(list_set(&app, "?region=mars").await.is_empty());
}

#[tokio::test]
async fn status_filter_keeps_that_status() {
    let app = TestApp::spawn().await;
    let c = Catalogue::register(&app).await;
    app.book(&c.rtx3090, 1.0).await;
    assert_eq!(list_set(&app, "?status=booked").await, set(&[&c.rtx3090]));
    assert_eq!(list_set(&app, "?status=available").await.len(), 4);
    assert!(list_set(&app, "?status=offline").await.is_empty());
}

#[tokio::test]
async fn miner_id_filter_keeps_that_miners_gpus() {
    let app = TestApp::spawn().await;
    let c = Catalogue::register(&app).await;
    assert_eq!(
        list_set(&app, "?miner_id=m1").await,
        set(&[&c.rtx4090_eu, &c.rtx3090])
    );
    assert_eq!(list_set(&app, "?miner_id=m3").await, set(&[&c.h100]));
}

#[tokio::test]
async fn capability_filter_keeps_gpus_that_have_it() {
    let app = TestApp::spawn().await;
    let c = Catalogue::register(&app).await;
    assert_eq!(
        list_set(&app, "?capability=llm").await,
        set(&[&c.rtx4090_eu, &c.a100])
    );
    assert_eq!(
        list_set(&app, "?capability=training").await,
        set(&[&c.a100, &c.h100])
    );
    assert!(
        list_set(&app, "?capability=ll").await.is_empty(),
        "capabilities match whole entries"
    );
}

#[tokio::test]
async fn filters_combine() {
    let app = TestApp::spawn().await;
    let c = Catalogue::register(&app).await;
    assert_eq!(
        list_set(&app, "?model=RTX4090&region=eu").await,
        set(&[&c.rtx4090_eu])
    );
    assert_eq!(
        list_set(&app, "?capability=llm&memory_min=40&price_max=2").await,
        set(&[&c.a100])
    );
}

#[tokio::test]
async fn default_order_is_creation_then_id() {
    let app = TestApp::spawn().await;
    let c = Catalogue::register(&app).await;
    assert_eq!(app.list_ids("").await, c.all());
    assert_eq!(app.list_ids("?sort=created").await, c.all());
}

#[tokio::test]
async fn sort_price_orders_by_current_price_cheapest_first() {
    let app = TestApp::spawn().await;
    let c = Catalogue::register(&app).await;
    let expected = vec![c.rtx3090, c.rtx4090_eu, c.rtx4090_us, c.a100, c.h100];
    assert_eq!(app.list_ids("?sort=price").await, expected);
}

#[tokio::test]
async fn sort_memory_orders_by_memory_largest_first() {
    let app = TestApp::spawn().await;
    let c = Catalogue::register(&app).await;
    let list = app
        .get("/v1/marketplace/gpu/list?sort=memory")
        .await
        .expect(200)
        .clone();
    let memory: Vec<f64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["memory_gb"].as_f64().unwrap())
        .collect();
    assert_eq!(memory, vec![80.0, 80.0, 24.0, 24.0, 24.0]);
    let ids = ids_of(&list);
    assert_eq!(set(&[&ids[0], &ids[1]]), set(&[&c.a100, &c.h100]));
}

#[tokio::test]
async fn sort_rating_orders_by_average_rating_best_first() {
    let app = TestApp::spawn().await;
    let c = Catalogue::register(&app).await;
    app.review(&c.h100, json!(5), json!(null)).await.expect(201);
    app.review(&c.rtx3090, json!(4), json!(null))
        .await
        .expect(201);
    app.review(&c.a100, json!(2), json!(null)).await.expect(201);

    let ids = app.list_ids("?sort=rating").await;
    assert_eq!(
        &ids[..3],
        &[c.h100.clone(), c.rtx3090.clone(), c.a100.clone()],
        "{ids:?}"
    );
    let unrated: HashSet<String> = ids[3..].iter().cloned().collect();
    assert_eq!(unrated, set(&[&c.rtx4090_eu, &c.rtx4090_us]));
}

#[tokio::test]
async fn pages_of_the_list_are_complete_and_never_repeat() {
    let app = TestApp::spawn().await;
    let mut registered = Vec::new();
    for i in 0..23 {
        // Three prices only, so sort=price has many ties to break.
        let price = [0.5, 1.0, 1.5][i % 3];
        registered.push(app.register_gpu(&format!("GPU {i}"), price).await);
    }

    for sort in [
        "",
        "&sort=created",
        "&sort=price",
        "&sort=memory",
        "&sort=rating",
    ] {
        let full = app.list_ids(&format!("?limit=500{sort}")).await;
        assert_eq!(full.len(), 23);
        let mut paged = Vec::new();
        for offset in (0..30).step_by(7) {
            paged.extend(
                app.list_ids(&format!("?limit=7&offset={offset}{sort}"))
                    .await,
            );
        }
        assert_eq!(
            paged, full,
            "pages of 7 ({sort}) are the full list in order"
        );
        // The same query twice gives the same order.
        assert_eq!(app.list_ids(&format!("?limit=500{sort}")).await, full);
    }
    assert_eq!(app.list_ids("?limit=500").await, registered);
}

#[tokio::test]
async fn list_limit_defaults_to_100() {
    let app = TestApp::spawn().await;
    for i in 0..105 {
        app.register_gpu(&format!("GPU {i}"), 1.0).await;
    }
    assert_eq!(app.list_ids("").await.len(), 100);
    assert_eq!(app.list_ids("?limit=500").await.len(), 105);
    assert_eq!(app.list_ids("?offset=100").await.len(), 5);
}

#[tokio::test]
async fn list_limit_out_of_range_is_rejected_with_400() {
    let app = TestApp::spawn().await;
    app.register_gpu("RTX 4090", 0.5).await;
    for query in ["?limit=0", "?limit=501", "?limit=-1"] {
        app.get(&format!("/v1/marketplace/gpu/list{query}"))
            .await
            .expect_error(400);
    }
    app.get("/v1/marketplace/gpu/list?limit=1")
        .await
        .expect(200);
    app.get("/v1/marketplace/gpu/list?limit=500")
        .await
        .expect(200);
}

#[tokio::test]
async fn details_of_an_unknown_gpu_are_404() {
    let app = TestApp::spawn().await;
    app.get("/v1/marketplace/gpu/gpu_00000000000000000000000000000000")
        .await
        .expect_error(404);
    app.get("/v1/marketplace/gpu/nonsense")
        .await
        .expect_error(404);
}

#[tokio::test]
async fn a_booked_gpu_cannot_be_deleted_until_released() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    app.book(&gpu_id, 1.0).await;

    app.delete(&format!("/v1/marketplace/gpu/{gpu_id}"))
        .await
        .expect_error(409);
    assert_eq!(
        app.details(&gpu_id).await["status"],
        "booked",
        "a refused delete changes nothing"
    );

    app.release(&gpu_id).await;
    app.delete(&format!("/v1/marketplace/gpu/{gpu_id}"))
        .await
        .expect(200);
    app.get(&format!("/v1/marketplace/gpu/{gpu_id}"))
        .await
        .expect_error(404);
    assert!(
        app.list_ids("").await.is_empty(),
        "a deleted GPU is not listed"
    );
    app.book_raw(&gpu_id, 1.0).await.expect_error(404);
}

#[tokio::test]
async fn deleting_an_unknown_gpu_is_404() {
    let app = TestApp::spawn().await;
    app.delete("/v1/marketplace/gpu/gpu_00000000000000000000000000000000")
        .await
        .expect_error(404);
}

#[tokio::test]
async fn a_deleted_gpu_keeps_its_orders() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    let booking = app.book(&gpu_id, 1.0).await;
    app.release(&gpu_id).await;
    app.delete(&format!("/v1/marketplace/gpu/{gpu_id}"))
        .await
        .expect(200);

    let orders = app.get("/v1/marketplace/orders").await.expect(200).clone();
    let orders = orders.as_array().unwrap();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["booking_id"], booking["booking_id"]);
}

#[tokio::test]
async fn a_heartbeat_records_liveness() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    app.heartbeat(&gpu_id).await.expect(200);
    let gpu = app.details(&gpu_id).await;
    assert_eq!(gpu["status"], "available");
    common::assert_timestamp(&gpu["last_heartbeat"]);
}

#[tokio::test]
async fn a_heartbeat_for_an_unknown_gpu_is_404() {
    let app = TestApp::spawn().await;
    app.heartbeat("gpu_00000000000000000000000000000000")
        .await
        .expect_error(404);
}

#[tokio::test]
async fn a_silent_gpu_goes_offline_and_a_heartbeat_brings_it_back() {
    let app = TestApp::spawn().await; // heartbeat timeout 1 s, checked every 100 ms
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    let never_heartbeated = app.register_gpu("RTX 3090", 0.3).await;
    app.heartbeat(&gpu_id).await.expect(200);

    eventually(
        Duration::from_secs(10),
        "the silent GPU to turn offline",
        || async { (app.details(&gpu_id).await["status"] == "offline").then_some(()) },
    )
    .await;
    assert_eq!(list_set(&app, "?status=offline").await, set(&[&gpu_id]));
    assert_eq!(
        app.details(&never_heartbeated).await["status"],
        "available",
        "a GPU that never sent a heartbeat never goes offline"
    );
    app.book_raw(&gpu_id, 1.0).await.expect_error(409);

    app.heartbeat(&gpu_id).await.expect(200);
    assert_eq!(app.details(&gpu_id).await["status"], "available");
    app.book(&gpu_id, 1.0).await;
}

#[tokio::test]
async fn a_gpu_that_keeps_sending_heartbeats_stays_available() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    for _ in 0..8 {
        app.heartbeat(&gpu_id).await.expect(200);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(app.details(&gpu_id).await["status"], "available");
    }
}

#[tokio::test]
async fn registering_without_a_price_uses_the_recommended_price_for_the_model() {
    let app = TestApp::spawn().await;
    app.register_gpu("L40S", 1.2).await;
    app.register_gpu("L40S", 1.6).await;
    let recommended =
        app.get("/v1/marketplace/pricing/L40S").await.expect(200)["recommended_price"].clone();

    let reply = app
        .register_raw(json!({ "name": "L40S", "memory_gb": 48 }))
        .await;
    let body = reply.expect(201);
    assert_eq!(
        micros(&body["price_per_hour"]),
        micros(&recommended),
        "{body}"
    );
    let gpu_id = body["gpu_id"].as_str().unwrap().to_owned();
    assert_eq!(
        micros(&app.details(&gpu_id).await["price_per_hour"]),
        micros(&recommended)
    );
}

#[tokio::test]
async fn registering_without_a_price_for_an_unknown_model_is_400() {
    let app = TestApp::spawn().await;
    app.register_raw(json!({ "name": "Brand New GPU", "memory_gb": 48 }))
        .await
        .expect_error(400);
    assert_eq!(app.count("SELECT COUNT(*) FROM gpus").await, 0);
}

#[tokio::test]
async fn pricing_for_an_unmatched_model_is_404() {
    let app = TestApp::spawn().await;
    app.register_gpu("RTX 4090", 0.5).await;
    app.get("/v1/marketplace/pricing/B200")
        .await
        .expect_error(404);
}

#[tokio::test]
async fn pricing_matches_gpus_by_capability_too() {
    let app = TestApp::spawn().await;
    app.register(
        json!({ "name": "Custom Board", "price_per_hour": 0.8, "capabilities": ["tensorcore-x"] }),
    )
    .await;
    let pricing = app
        .get("/v1/marketplace/pricing/tensorcore-x")
        .await
        .expect(200)
        .clone();
    assert_eq!(pricing["total_gpus"].as_i64(), Some(1));
    assert_eq!(micros(&pricing["average_price"]), 800_000);
}

#[tokio::test]
async fn pricing_reports_utilization_of_the_model() {
    let app = TestApp::spawn().await;
    let a = app.register_gpu("RTX 4090", 0.4).await;
    app.register_gpu("RTX 4090", 0.5).await;
    app.register_gpu("RTX 4090", 0.6).await;
    app.register_gpu("RTX 4090", 0.9).await;
    app.book(&a, 1.0).await;

    let pricing = app
        .get("/v1/marketplace/pricing/RTX4090")
        .await
        .expect(200)
        .clone();
    assert_eq!(pricing["total_gpus"].as_i64(), Some(4));
    assert_eq!(pricing["available_gpus"].as_i64(), Some(3));
    assert_eq!(pricing["utilization"].as_f64(), Some(0.25));
    assert_eq!(
        micros(&pricing["median_price"]),
        550_000,
        "median of 0.4 0.5 0.6 0.9"
    );
    assert_eq!(micros(&pricing["average_price"]), 600_000);
}
