//! Migration 0008 moves the capabilities of GPUs registered before it into the indexed table, so the
//! capability filter and the pricing match keep finding them.

mod common;

use common::{TestDatabase, install_drivers, migrate_before};
use gpu_market::config::{DatabaseConfig, Secret};
use gpu_market::domain::ModelFilter;
use gpu_market::store::{GpuFilter, GpuOrder, Matching, Page, Store, gpus};

/// The schema as it was before 0008, with three GPUs registered then.
async fn migrate_before_0008(url: &str, backend: &str) {
    let pool = migrate_before(url, backend, "0008").await;
    for (id, model, key, capabilities) in [
        ("gpu_old_1", "RTX 4090", "rtx4090", r#"["CUDA", "llm"]"#),
        ("gpu_old_2", "A100", "a100", r#"["training", "llm-70b"]"#),
        ("gpu_old_3", "T4", "t4", "[]"),
    ] {
        sqlx::query(
            "INSERT INTO gpus (id, miner_id, model, model_key, memory_gb, capabilities, price_micro, \
             current_price_micro, status, created_at) VALUES ($1, 'm1', $2, $3, 24, $4, 500000, 500000, \
             'available', 1)",
        )
        .bind(id)
        .bind(model)
        .bind(key)
        .bind(capabilities)
        .execute(&pool)
        .await
        .expect("old row");
    }
    pool.close().await;
}

async fn ids(store: &Store, matching: Matching) -> Vec<String> {
    let filter = GpuFilter {
        matching,
        ..GpuFilter::default()
    };
    let mut ids: Vec<String> = gpus::list(store, &filter, GpuOrder::CreatedAsc, Page::first(100))
        .await
        .expect("list")
        .into_iter()
        .map(|gpu| gpu.id.to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn gpus_registered_before_the_migration_keep_their_capabilities() {
    install_drivers();
    let database = TestDatabase::create().await;
    let backend = if database.is_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    migrate_before_0008(database.url(), backend).await;
    let config = DatabaseConfig {
        url: Secret::new(database.url().to_owned()),
        ..DatabaseConfig::default()
    };
    let store = Store::connect(&config).await.expect("store connects");
    store.migrate().await.expect("migration 0008 applies");

    assert_eq!(
        ids(&store, Matching::Capability("cuda".into())).await,
        ["gpu_old_1"]
    );
    assert_eq!(
        ids(&store, Matching::Capability("LLM".into())).await,
        ["gpu_old_1"]
    );
    assert_eq!(
        ids(
            &store,
            Matching::ModelOrCapability(ModelFilter::parse("llm"), "llm".into())
        )
        .await,
        ["gpu_old_1", "gpu_old_2"]
    );
    assert_eq!(
        ids(&store, Matching::Model(ModelFilter::parse("T4"))).await,
        ["gpu_old_3"],
        "model keys are migrated too"
    );
    store.close().await;
}
