//! The pricing endpoint's figures and the booking facts are computed by the database (aggregates,
//! an index walk to the median, a count over one index range). These tests check they are the
//! figures the earlier code computed from every matching GPU's row, on a market with several models,
//! capabilities, statuses, a deleted GPU and odd and even counts.

mod common;

use common::TestApp;
use gpu_market::config::{DatabaseConfig, Secret};
use gpu_market::domain::{Gpu, GpuId, GpuStatus, ModelFilter, Money, StatusCounts, Timestamp};
use gpu_market::store::gpus::PriceStatistics;
use gpu_market::store::{GpuFilter, GpuOrder, Matching, Page, Store, bookings, gpus};
use serde_json::json;

struct Market {
    app: TestApp,
    store: Store,
}

impl Market {
    /// Eleven GPUs over four models (prices chosen so averages and medians round), two booked, one
    /// deleted.
    async fn new() -> Self {
        let app = TestApp::spawn().await;
        let mut ids = Vec::new();
        for (i, (name, price, caps)) in [
            ("RTX 4090", 0.5, json!(["cuda", "llama2-7b"])),
            ("RTX 4090", 0.7, json!(["cuda"])),
            ("rtx-4090", 0.333333, json!(["fp16"])),
            ("RTX 4090", 1.25, json!([])),
            ("RTX 3090", 0.4, json!(["llama2-13b"])),
            ("RTX 3090", 0.45, json!(["cuda"])),
            ("A100", 2.0, json!(["training"])),
            ("A100", 2.5, json!(["training", "LLaMA2-70b"])),
            ("A100", 3.000001, json!(["training"])),
            ("H100 SXM", 4.0, json!(["fp8"])),
            ("H100 SXM", 4.0, json!(["fp8"])),
        ]
        .into_iter()
        .enumerate()
        {
            let region = if i % 2 == 0 { "eu-west" } else { "us-east" };
            ids.push(
                app.register(json!({
                    "name": name, "memory_gb": 24 + i, "price_per_hour": price, "region": region,
                    "capabilities": caps,
                }))
                .await,
            );
        }
        app.book(&ids[1], 1.0).await;
        app.book(&ids[7], 2.0).await;
        // A booking that ended still counts among the bookings of the last hour.
        app.book(&ids[4], 1.0).await;
        app.release(&ids[4]).await;
        app.delete(&format!("/v1/marketplace/gpu/{}", ids[5]))
            .await
            .expect(200);
        let config = DatabaseConfig {
            url: Secret::new(app.database_url().to_owned()),
            ..DatabaseConfig::default()
        };
        let store = Store::connect(&config).await.expect("store connects");
        Self { app, store }
    }

    /// The rows and the statistics of `matching`, read while no price refresh ran between them (the
    /// background refresher reprices the market shortly after each booking).
    async fn rows_and_statistics(
        &self,
        matching: &Matching,
    ) -> (Vec<Gpu>, Option<PriceStatistics>) {
        loop {
            let before = self.rows(matching).await;
            let statistics = gpus::price_statistics(&self.store, matching)
                .await
                .expect("statistics");
            if self.rows(matching).await == before {
                return (before, statistics);
            }
        }
    }

    /// Every GPU the matching selects, as the earlier pricing code read them (cheapest first).
    async fn rows(&self, matching: &Matching) -> Vec<Gpu> {
        let filter = GpuFilter {
            matching: matching.clone(),
            ..GpuFilter::default()
        };
        gpus::list(
            &self.store,
            &filter,
            GpuOrder::CurrentPriceAsc,
            Page::first(100_000),
        )
        .await
        .expect("list")
    }
}

fn median(prices: &[Money]) -> Money {
    let mut sorted = prices.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        Money::average([sorted[n / 2 - 1], sorted[n / 2]])
    }
}

fn matchings() -> Vec<(&'static str, Matching)> {
    let model_or_capability =
        |text: &str| Matching::ModelOrCapability(ModelFilter::parse(text), text.to_owned());
    vec![
        ("one model, even count", model_or_capability("RTX4090")),
        (
            "a model with a deleted GPU",
            model_or_capability("rtx 3090"),
        ),
        ("one model, odd count", model_or_capability("A100")),
        ("equal prices", model_or_capability("h100")),
        ("a family substring", model_or_capability("rtx")),
        ("a wildcard", Matching::Model(ModelFilter::parse("*0"))),
        ("capabilities only", model_or_capability("llama2")),
        ("model or capability", model_or_capability("fp")),
        ("everything", Matching::Any),
    ]
}

#[tokio::test]
async fn database_statistics_match_the_rows_they_summarise() {
    let market = Market::new().await;
    for (what, matching) in matchings() {
        let (rows, statistics) = market.rows_and_statistics(&matching).await;
        assert!(!rows.is_empty(), "{what}: the market has matching GPUs");
        let statistics =
            statistics.unwrap_or_else(|| panic!("{what}: statistics of a non-empty set"));
        let asking: Vec<Money> = rows.iter().map(|g| g.asking_price).collect();
        let mut keys: Vec<String> = rows.iter().map(|g| g.model_key.clone()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(statistics.model_keys, keys, "{what}: models");
        assert_eq!(
            statistics.counts,
            StatusCounts::of(rows.iter().map(|g| g.status)),
            "{what}: counts"
        );
        assert_eq!(statistics.min_asking, *asking.iter().min().expect("min"));
        assert_eq!(statistics.max_asking, *asking.iter().max().expect("max"));
        assert_eq!(
            Money::mean(
                i128::from(statistics.asking_sum),
                i128::from(statistics.counts.total)
            ),
            Money::average(asking.iter().copied()),
            "{what}: average"
        );
        assert_eq!(
            gpu_market::market::rules::stats::median(&statistics.middle_asking),
            Some(median(&asking)),
            "{what}: median"
        );
        let available: Vec<&Gpu> = rows
            .iter()
            .filter(|g| g.status == GpuStatus::Available)
            .collect();
        assert_eq!(
            Money::mean(
                i128::from(statistics.available_current_sum),
                i128::from(statistics.counts.available)
            ),
            Money::average(available.iter().map(|g| g.current_price)),
            "{what}: current price of the available GPUs"
        );
        assert_eq!(statistics.cheapest.id, rows[0].id, "{what}: cheapest GPU");
        assert_eq!(
            statistics.cheapest_available.map(|g| g.id),
            available.first().map(|g| g.id.clone()),
            "{what}: cheapest available GPU"
        );
    }
    for nothing in [
        Matching::ModelOrCapability(ModelFilter::parse("B200"), "B200".into()),
        Matching::Model(ModelFilter::parse("A?00x")),
    ] {
        assert_eq!(
            gpus::price_statistics(&market.store, &nothing)
                .await
                .expect("statistics"),
            None
        );
    }
}

#[tokio::test]
async fn the_pricing_endpoint_reports_the_rows_figures() {
    let market = Market::new().await;
    let matching = Matching::ModelOrCapability(ModelFilter::parse("RTX4090"), "RTX4090".into());
    // Read while no price refresh ran in between.
    let (answer, rows) = loop {
        let rows = market.rows(&matching).await;
        let answer = market
            .app
            .get("/v1/marketplace/pricing/RTX4090")
            .await
            .expect(200)
            .clone();
        if market.rows(&matching).await == rows {
            break (answer, rows);
        }
    };
    let asking: Vec<Money> = rows.iter().map(|g| g.asking_price).collect();
    let micros_of = |field: &str| common::micros(&answer[field]);
    assert_eq!(answer["total_gpus"], json!(4));
    assert_eq!(answer["available_gpus"], json!(3));
    assert_eq!(
        micros_of("min_price"),
        asking.iter().min().expect("min").micros()
    );
    assert_eq!(
        micros_of("max_price"),
        asking.iter().max().expect("max").micros()
    );
    assert_eq!(
        micros_of("average_price"),
        Money::average(asking.iter().copied()).micros()
    );
    assert_eq!(micros_of("median_price"), median(&asking).micros());
    let available: Vec<&Gpu> = rows
        .iter()
        .filter(|g| g.status == GpuStatus::Available)
        .collect();
    assert_eq!(
        micros_of("current_price"),
        Money::average(available.iter().map(|g| g.current_price)).micros()
    );
    assert_eq!(
        answer["recommended_gpu"],
        json!(available[0].id.to_string())
    );
    market
        .app
        .get("/v1/marketplace/pricing/B200")
        .await
        .expect_error(404);
}

#[tokio::test]
async fn bookings_since_count_by_model_as_the_join_did() {
    let market = Market::new().await;
    let an_hour_ago = Timestamp::now().minus_seconds(3_600);
    for keys in [
        vec!["rtx4090".to_owned()],
        vec!["rtx3090".to_owned()],
        vec!["a100".to_owned(), "rtx4090".to_owned()],
        vec!["h100sxm".to_owned()],
        vec!["b200".to_owned()],
    ] {
        // The earlier query: every booking joined to its GPU's model.
        let mut joined = "SELECT COUNT(*) FROM bookings b JOIN gpus g ON g.id = b.gpu_id \
                          WHERE b.start_at >= $1 AND g.model_key IN ("
            .to_owned();
        for i in 0..keys.len() {
            joined.push_str(&format!("{}${}", if i > 0 { ", " } else { "" }, i + 2));
        }
        joined.push(')');
        let mut query = sqlx::query_scalar::<_, i64>(&joined).bind(an_hour_ago);
        for key in &keys {
            query = query.bind(key.clone());
        }
        let expected = query.fetch_one(market.app.db()).await.expect("join");
        let counted = bookings::started_since(&market.store, &keys, an_hour_ago)
            .await
            .expect("count");
        assert_eq!(counted, expected, "bookings of {keys:?}");
    }
    let rtx = ["rtx3090".to_owned()];
    assert_eq!(
        bookings::started_since(&market.store, &rtx, an_hour_ago)
            .await
            .expect("count"),
        1,
        "an ended booking still started within the hour"
    );
    assert_eq!(
        bookings::started_since(&market.store, &rtx, Timestamp::now().plus_seconds(1))
            .await
            .expect("count"),
        0
    );
}

#[tokio::test]
async fn kept_counts_and_sums_equal_a_count_of_the_gpus() {
    let market = Market::new().await;
    // Prices change outside the registration and booking paths too: the catalogue refresh writes
    // current prices (of available and booked GPUs alike), and an operator may edit asking prices.
    for change in [
        "UPDATE gpus SET current_price_micro = current_price_micro + 7 WHERE model_key = 'a100'",
        "UPDATE gpus SET price_micro = price_micro + 3 WHERE model_key = 'rtx4090'",
    ] {
        sqlx::query(change)
            .execute(market.app.db())
            .await
            .expect("price change");
    }
    let mut keys: Vec<Option<String>> = ["rtx4090", "rtx3090", "a100", "h100sxm", "b200"]
        .into_iter()
        .map(|k| Some(k.to_owned()))
        .collect();
    keys.push(None);
    for key in keys {
        let (gpus_of, counts_of) = if key.is_some() {
            (" AND model_key = $1", " WHERE model_key = $1")
        } else {
            ("", "")
        };
        // One statement, so the refresher's writes cannot fall between the two sides.
        let sql = format!(
            "SELECT COUNT(*), \
            CAST(COALESCE(SUM(CASE WHEN status = 'available' THEN 1 ELSE 0 END), 0) AS BIGINT), \
            CAST(COALESCE(SUM(CASE WHEN status = 'booked' THEN 1 ELSE 0 END), 0) AS BIGINT), \
            CAST(COALESCE(SUM(CASE WHEN status = 'offline' THEN 1 ELSE 0 END), 0) AS BIGINT), \
            CAST(COALESCE(SUM(price_micro), 0) AS BIGINT), \
            CAST(COALESCE(SUM(CASE WHEN status = 'available' THEN current_price_micro ELSE 0 END), 0) \
                AS BIGINT), \
            (SELECT CAST(COALESCE(SUM(asking_sum), 0) AS BIGINT) FROM gpu_model_counts{counts_of}), \
            (SELECT CAST(COALESCE(SUM(available_current_sum), 0) AS BIGINT) \
                FROM gpu_model_counts{counts_of}) \
            FROM gpus WHERE deleted_at IS NULL{gpus_of}"
        );
        let mut query = sqlx::query_as::<_, (i64, i64, i64, i64, i64, i64, i64, i64)>(&sql);
        if let Some(key) = &key {
            query = query.bind(key.clone());
        }
        let (
            total,
            available,
            booked,
            offline,
            asking,
            available_current,
            kept_asking,
            kept_current,
        ) = query.fetch_one(market.app.db()).await.expect("count");
        assert_eq!(
            (kept_asking, kept_current),
            (asking, available_current),
            "sums of asking prices and of available GPUs' current prices of {key:?}"
        );
        let counted = StatusCounts {
            total,
            available,
            booked,
            offline,
        };
        let kept = gpus::status_counts(&market.store, key.as_deref())
            .await
            .expect("kept counts");
        assert_eq!(kept, counted, "counts of {key:?}");
    }
    let rtx3090 = gpus::status_counts(&market.store, Some("rtx3090"))
        .await
        .expect("counts");
    assert_eq!(
        (rtx3090.total, rtx3090.available),
        (1, 1),
        "the deleted GPU is not counted; the released one is available again"
    );
}

/// PostgreSQL: a repricing and a booking of the same model take GPU rows and the model's counts row
/// (migration 0011) in one order, so neither can hold what the other waits for. The booking's side is
/// played by hand: a transaction holds a GPU row of the repricing's last chunk, and once the
/// repricing waits for that row, asks for the counts row, as a booking's trigger does.
#[tokio::test]
async fn a_repricing_and_a_booking_of_one_model_do_not_deadlock() {
    let market = Market::new().await;
    if !market.app.is_postgres() {
        return;
    }
    // More GPUs than one price-update statement holds, so the repricing has a second chunk.
    for _ in 0..210 {
        market.app.register_gpu("L40S", 1.0).await;
    }
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM gpus WHERE model_key = 'l40s' ORDER BY id")
            .fetch_all(market.app.db())
            .await
            .expect("ids");
    let held = ids.first().expect("a GPU").clone();
    // The held GPU goes last, into the last update statement.
    let prices: Vec<(GpuId, Money)> = ids
        .iter()
        .skip(1)
        .chain(std::iter::once(&held))
        .map(|id| (GpuId::from(id.as_str()), Money::from_micros(1_234_567)))
        .collect();

    let mut booking = market.app.db().begin().await.expect("begin");
    sqlx::query("SELECT id FROM gpus WHERE id = $1 FOR UPDATE")
        .bind(held.clone())
        .fetch_one(&mut *booking)
        .await
        .expect("hold the GPU row");
    let store = market.store.clone();
    let repricing = tokio::spawn(async move { gpus::update_current_prices(&store, &prices).await });
    // Give the repricing time to reach the held row (a shorter wait only makes the test weaker).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    sqlx::query("UPDATE gpu_model_counts SET total = total WHERE model_key = 'l40s'")
        .execute(&mut *booking)
        .await
        .expect("the booking's side takes the counts row");
    booking.commit().await.expect("the booking's side commits");
    repricing
        .await
        .expect("repricing task")
        .expect("the repricing commits");
}
