//! Reviews: adding and listing, exact aggregates (also under concurrent writes), validation, order and
//! pagination.

mod common;

use common::{TestApp, assert_id};
use serde_json::{Value, json};

async fn reviews_of(app: &TestApp, gpu_id: &str, query: &str) -> Value {
    app.get(&format!("/v1/marketplace/gpu/{gpu_id}/reviews{query}"))
        .await
        .expect(200)
        .clone()
}

fn comments(reviews: &Value) -> Vec<String> {
    reviews["reviews"]
        .as_array()
        .expect("reviews is a list")
        .iter()
        .map(|r| r["comment"].as_str().unwrap_or("<null>").to_owned())
        .collect()
}

#[tokio::test]
async fn an_added_review_is_listed_with_its_comment() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    let added = app
        .review(&gpu_id, json!(5), json!("fast and stable"))
        .await
        .expect(201)
        .clone();
    let review_id = assert_id(&added["review_id"], "rv_");

    let reviews = reviews_of(&app, &gpu_id, "").await;
    let list = reviews["reviews"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["review_id"], review_id.as_str());
    assert_eq!(list[0]["rating"].as_i64(), Some(5));
    assert_eq!(list[0]["comment"], "fast and stable");
}

#[tokio::test]
async fn aggregates_follow_every_review_exactly() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;

    let first = app
        .review(&gpu_id, json!(5), json!(null))
        .await
        .expect(201)
        .clone();
    assert_eq!(first["average_rating"].as_f64(), Some(5.0));
    let second = app
        .review(&gpu_id, json!(4), json!(null))
        .await
        .expect(201)
        .clone();
    assert_eq!(second["average_rating"].as_f64(), Some(4.5));
    let third = app
        .review(&gpu_id, json!(2), json!(null))
        .await
        .expect(201)
        .clone();
    assert!(
        (third["average_rating"].as_f64().unwrap() - 11.0 / 3.0).abs() < 0.01,
        "{third}"
    );
    app.review(&gpu_id, json!(1), json!(null)).await.expect(201);

    let reviews = reviews_of(&app, &gpu_id, "").await;
    assert_eq!(reviews["total_reviews"].as_i64(), Some(4));
    assert_eq!(reviews["average_rating"].as_f64(), Some(3.0));
    let gpu = app.details(&gpu_id).await;
    assert_eq!(gpu["total_reviews"].as_i64(), Some(4));
    assert_eq!(gpu["average_rating"].as_f64(), Some(3.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reviews_keep_the_aggregates_exact() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;

    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = app.client.clone();
        let url = app.url(&format!("/v1/marketplace/gpu/{gpu_id}/reviews"));
        let body = json!({ "rating": i % 5 + 1, "comment": format!("review {i}") });
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

    // 8 × (1 + 2 + 3 + 4 + 5) = 120 over 40 reviews.
    let reviews = reviews_of(&app, &gpu_id, "").await;
    assert_eq!(reviews["total_reviews"].as_i64(), Some(40));
    assert_eq!(reviews["average_rating"].as_f64(), Some(3.0));
    assert_eq!(app.count("SELECT COUNT(*) FROM reviews").await, 40);
    let sums: (i64, i64) =
        sqlx::query_as("SELECT rating_sum, rating_count FROM gpus WHERE id = $1")
            .bind(gpu_id.clone())
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(sums, (120, 40));
}

#[tokio::test]
async fn a_rating_outside_one_to_five_or_not_an_integer_is_422() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    for rating in [
        json!(0),
        json!(6),
        json!(-1),
        json!(4.5),
        json!("x"),
        json!("5"),
        json!(null),
    ] {
        let reply = app.review(&gpu_id, rating.clone(), json!("ok")).await;
        assert_eq!(reply.status, 422, "rating {rating}: {}", reply.text);
        common::assert_detail(&reply);
    }
    let missing = app
        .post(
            &format!("/v1/marketplace/gpu/{gpu_id}/reviews"),
            &json!({ "comment": "x" }),
        )
        .await;
    missing.expect_error(422);
    assert_eq!(app.count("SELECT COUNT(*) FROM reviews").await, 0);
    assert_eq!(
        app.details(&gpu_id).await["total_reviews"].as_i64(),
        Some(0)
    );
}

#[tokio::test]
async fn a_comment_over_2000_characters_is_400() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    app.review(&gpu_id, json!(4), json!("x".repeat(2001)))
        .await
        .expect_error(400);
    assert_eq!(app.count("SELECT COUNT(*) FROM reviews").await, 0);
}

#[tokio::test]
async fn a_comment_of_exactly_2000_characters_is_accepted() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    // Characters, not bytes: 2000 two-byte characters are within the limit.
    app.review(&gpu_id, json!(4), json!("é".repeat(2000)))
        .await
        .expect(201);
}

#[tokio::test]
async fn a_mistyped_comment_is_422() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    app.review(&gpu_id, json!(4), json!(12))
        .await
        .expect_error(422);
    assert_eq!(app.count("SELECT COUNT(*) FROM reviews").await, 0);
}

#[tokio::test]
async fn reviewing_an_unknown_gpu_is_404() {
    let app = TestApp::spawn().await;
    let unknown = "gpu_00000000000000000000000000000000";
    app.review(unknown, json!(5), json!(null))
        .await
        .expect_error(404);
    app.get(&format!("/v1/marketplace/gpu/{unknown}/reviews"))
        .await
        .expect_error(404);
    assert_eq!(app.count("SELECT COUNT(*) FROM reviews").await, 0);
}

#[tokio::test]
async fn reviews_are_listed_newest_first() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    for comment in ["first", "second", "third"] {
        app.review(&gpu_id, json!(3), json!(comment))
            .await
            .expect(201);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(
        comments(&reviews_of(&app, &gpu_id, "").await),
        vec!["third", "second", "first"]
    );
}

#[tokio::test]
async fn reviews_paginate_with_limit_and_offset() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    for i in 0..12 {
        app.review(&gpu_id, json!(4), json!(format!("r{i:02}")))
            .await
            .expect(201);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let default = reviews_of(&app, &gpu_id, "").await;
    assert_eq!(comments(&default).len(), 10, "the default limit is 10");
    assert_eq!(
        default["total_reviews"].as_i64(),
        Some(12),
        "the total counts every review"
    );

    let all: Vec<String> = (0..12).rev().map(|i| format!("r{i:02}")).collect();
    let mut paged = comments(&reviews_of(&app, &gpu_id, "?limit=5").await);
    paged.extend(comments(
        &reviews_of(&app, &gpu_id, "?limit=5&offset=5").await,
    ));
    paged.extend(comments(
        &reviews_of(&app, &gpu_id, "?limit=5&offset=10").await,
    ));
    assert_eq!(paged, all);
    assert_eq!(
        comments(&reviews_of(&app, &gpu_id, "?limit=100").await).len(),
        12
    );
}

#[tokio::test]
async fn a_review_limit_out_of_range_is_400() {
    let app = TestApp::spawn().await;
    let gpu_id = app.register_gpu("RTX 4090", 0.5).await;
    app.get(&format!("/v1/marketplace/gpu/{gpu_id}/reviews?limit=0"))
        .await
        .expect_error(400);
    app.get(&format!("/v1/marketplace/gpu/{gpu_id}/reviews?limit=101"))
        .await
        .expect_error(400);
}

#[tokio::test]
async fn reviews_of_one_gpu_do_not_count_for_another() {
    let app = TestApp::spawn().await;
    let a = app.register_gpu("RTX 4090", 0.5).await;
    let b = app.register_gpu("RTX 4090", 0.5).await;
    app.review(&a, json!(5), json!(null)).await.expect(201);
    let other = reviews_of(&app, &b, "").await;
    assert_eq!(other["total_reviews"].as_i64(), Some(0));
    assert!(other["reviews"].as_array().unwrap().is_empty());
    assert_eq!(app.details(&b).await["average_rating"].as_f64(), Some(0.0));
}
