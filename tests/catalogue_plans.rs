//! Every catalogue filter and the price sort can be served by an index, on both backends: the
//! database's plan is inspected, never a timing. On PostgreSQL sequential scans and sorts are
//! discouraged for the plan (see `gpus::explain_list`), so a tiny test table still shows which index
//! can serve the query.

mod common;

use common::TestApp;
use gpu_market::config::{DatabaseConfig, Secret};
use gpu_market::domain::{GpuStatus, ModelFilter, Money, Timestamp};
use gpu_market::store::{GpuFilter, GpuOrder, Matching, Page, Store, bookings, gpus};
use serde_json::json;

struct Plans {
    store: Store,
    postgres: bool,
    _app: TestApp,
}

impl Plans {
    async fn new() -> Self {
        let app = TestApp::spawn().await;
        for (name, region, caps) in [
            ("RTX 4090", "eu-west", json!(["cuda", "llm"])),
            ("A100", "us-east", json!(["llm", "training"])),
            ("H100 SXM", "eu-west", json!(["training"])),
        ] {
            app.register(json!({
                "name": name, "memory_gb": 80, "price_per_hour": 1.5, "region": region,
                "capabilities": caps,
            }))
            .await;
        }
        let config = DatabaseConfig {
            url: Secret::new(app.database_url().to_owned()),
            ..DatabaseConfig::default()
        };
        let store = Store::connect(&config).await.expect("store connects");
        Self {
            store,
            postgres: app.is_postgres(),
            _app: app,
        }
    }

    /// The plan of a first page, as one string, after checking that no step reads the whole table.
    async fn plan(&self, filter: GpuFilter, order: GpuOrder) -> String {
        let lines = gpus::explain_list(&self.store, &filter, order, Page::first(20))
            .await
            .expect("explain");
        assert!(!lines.is_empty(), "no plan for {filter:?}");
        let plan = lines.join("\n");
        self.check_no_full_scan(&lines, &format!("{filter:?}:\n{plan}"));
        plan
    }

    /// No step of the plan `lines` reads a whole table; `context` names the query in the message.
    fn check_no_full_scan(&self, lines: &[String], context: &str) {
        assert!(!lines.is_empty(), "no plan: {context}");
        for line in lines {
            let full_scan = if self.postgres {
                line.contains("Seq Scan")
            } else {
                line.trim_start().starts_with("SCAN") && !line.contains("USING")
            };
            assert!(!full_scan, "reads a whole table: {context}");
        }
    }

    async fn assert_uses(&self, filter: GpuFilter, order: GpuOrder, index: &str) {
        let plan = self.plan(filter.clone(), order).await;
        assert!(
            plan.contains(index),
            "{filter:?} in {order:?} order should use {index}:\n{plan}"
        );
    }
}

fn matching(matching: Matching) -> GpuFilter {
    GpuFilter {
        matching,
        ..GpuFilter::default()
    }
}

#[tokio::test]
async fn equality_filters_read_their_listing_index_in_catalogue_order() {
    let plans = Plans::new().await;
    let created = GpuOrder::CreatedAsc;
    plans
        .assert_uses(
            matching(Matching::Model(ModelFilter::parse("RTX4090"))),
            created,
            "gpus_model_listing",
        )
        .await;
    let region = GpuFilter {
        region: Some("EU-West".into()),
        ..GpuFilter::default()
    };
    plans
        .assert_uses(region, created, "gpus_region_listing")
        .await;
    let available = GpuFilter {
        statuses: vec![GpuStatus::Available],
        ..GpuFilter::default()
    };
    plans
        .assert_uses(available, created, "gpus_status_listing")
        .await;
}

#[tokio::test]
async fn the_capability_filter_uses_the_capability_table() {
    let plans = Plans::new().await;
    plans
        .assert_uses(
            matching(Matching::Capability("LLM".into())),
            GpuOrder::CreatedDesc,
            "gpu_capabilities_listing",
        )
        .await;
    // In another order each GPU is probed by the capability table's primary key.
    let probe = if plans.postgres {
        "gpu_capabilities_pkey"
    } else {
        "PRIMARY KEY"
    };
    plans
        .assert_uses(
            matching(Matching::Capability("llm".into())),
            GpuOrder::CurrentPriceAsc,
            probe,
        )
        .await;
    plans
        .assert_uses(
            matching(Matching::Both(ModelFilter::parse("A100"), "llm".into())),
            GpuOrder::CreatedAsc,
            "gpu_capabilities_listing",
        )
        .await;
}

#[tokio::test]
async fn ranges_and_the_price_sort_use_an_index() {
    let plans = Plans::new().await;
    plans
        .assert_uses(
            GpuFilter::default(),
            GpuOrder::CurrentPriceAsc,
            "gpus_current_price",
        )
        .await;
    let price_max = GpuFilter {
        current_price_max: Money::from_units(2.0),
        ..GpuFilter::default()
    };
    plans
        .assert_uses(
            price_max.clone(),
            GpuOrder::CurrentPriceAsc,
            "gpus_current_price",
        )
        .await;
    let memory_min = GpuFilter {
        memory_min: Some(48.0),
        ..GpuFilter::default()
    };
    plans
        .assert_uses(memory_min.clone(), GpuOrder::MemoryAsc, "gpus_memory")
        .await;
    // In catalogue order either the range's index or the listing index serves them.
    for filter in [price_max, memory_min] {
        plans.plan(filter, GpuOrder::CreatedAsc).await;
    }
}

#[tokio::test]
async fn the_pricing_match_unites_two_index_lookups() {
    let plans = Plans::new().await;
    let plan = plans
        .plan(
            matching(Matching::ModelOrCapability(
                ModelFilter::parse("train"),
                "train".into(),
            )),
            GpuOrder::CurrentPriceAsc,
        )
        .await;
    assert!(
        plan.contains("gpu_capabilities"),
        "the capability side reads the capability table:\n{plan}"
    );
    let plan = plans
        .plan(
            matching(Matching::ModelOrCapability(
                ModelFilter::parse("A100"),
                "llm".into(),
            )),
            GpuOrder::CurrentPriceAsc,
        )
        .await;
    assert!(
        plan.contains("gpus_model"),
        "the model side reads a model index:\n{plan}"
    );
}

#[tokio::test]
async fn the_pricing_statistics_of_a_model_read_its_price_indexes() {
    let plans = Plans::new().await;
    let model = Matching::ModelOrCapability(ModelFilter::parse("RTX4090"), "RTX4090".into());
    let queries = gpus::explain_price_statistics(&plans.store, &model)
        .await
        .expect("explain");
    // the kept counts with the ends of the asking-price index, and the median through it; the
    // cheapest (available) GPU in the order of the current-price index. PostgreSQL costs the
    // extremes on a tiny table as it likes, so there any of the model's indexes will do; the median
    // needs the asking-price order.
    let expected = [
        if plans.postgres {
            "gpus_model_"
        } else {
            "gpus_model_asking"
        },
        "gpus_model_asking",
        "gpus_model_price",
        "gpus_model_price",
    ];
    assert_eq!(queries.len(), expected.len());
    for (lines, index) in queries.iter().zip(expected) {
        let plan = lines.join("\n");
        plans.check_no_full_scan(lines, &plan);
        assert!(plan.contains(index), "should use {index}:\n{plan}");
        let sorts = if plans.postgres {
            plan.contains("Sort Key")
        } else {
            plan.contains("TEMP B-TREE")
        };
        assert!(!sorts, "sorts:\n{plan}");
    }
    // Several models or capabilities still read indexes, never the whole table.
    let family = Matching::ModelOrCapability(ModelFilter::parse("a"), "a".into());
    for lines in gpus::explain_price_statistics(&plans.store, &family)
        .await
        .expect("explain")
    {
        plans.check_no_full_scan(&lines, &lines.join("\n"));
    }
}

#[tokio::test]
async fn bookings_of_a_model_since_read_one_index_range() {
    let plans = Plans::new().await;
    let lines = bookings::explain_started_since(
        &plans.store,
        &["rtx4090".to_owned(), "a100".to_owned()],
        Timestamp::now().minus_seconds(3_600),
    )
    .await
    .expect("explain");
    let plan = lines.join("\n");
    plans.check_no_full_scan(&lines, &plan);
    assert!(plan.contains("bookings_model_start"), "{plan}");
    assert!(!plan.contains("gpus"), "no join through the GPUs:\n{plan}");
}

#[tokio::test]
async fn the_heartbeat_monitor_reads_only_silent_gpus() {
    let plans = Plans::new().await;
    let lines = gpus::explain_mark_silent_offline(&plans.store, Timestamp::now())
        .await
        .expect("explain");
    let plan = lines.join("\n");
    plans.check_no_full_scan(&lines, &plan);
    // PostgreSQL picks between its indexes by statistics, which three GPUs do not give.
    if !plans.postgres {
        assert!(plan.contains("gpus_silent_heartbeats"), "{plan}");
    }
}
