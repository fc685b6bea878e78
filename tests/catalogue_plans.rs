//! Every catalogue filter and the price sort can be served by an index, on both backends: the
//! database's plan is inspected, never a timing. On PostgreSQL sequential scans and sorts are
//! discouraged for the plan (see `gpus::explain_list`), so a tiny test table still shows which index
//! can serve the query.

mod common;

use common::TestApp;
use gpu_market::config::{DatabaseConfig, Secret};
use gpu_market::domain::{GpuStatus, ModelFilter, Money};
use gpu_market::store::{GpuFilter, GpuOrder, Matching, Page, Store, gpus};
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
        for line in &lines {
            let full_scan = if self.postgres {
                line.contains("Seq Scan")
            } else {
                line.trim_start().starts_with("SCAN") && !line.contains("USING")
            };
            assert!(!full_scan, "{filter:?} reads a whole table:\n{plan}");
        }
        plan
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
