//! On SQLite the decision log has a database file of its own (`x.db` → `x.decisions.db`) with its own
//! writer: a market database that kept the log in its own file moves its entries there on upgrade, and
//! new entries go to the log's file, read back through the market's readers. The log's writer gives up
//! on what the database can never take, entry by entry.

mod common;

use std::time::Duration;

use common::{TestDatabase, eventually, install_drivers, migrate_before};
use gpu_market::config::{DatabaseConfig, DecisionLogConfig, Secret};
use gpu_market::domain::{DecisionEntry, DecisionId, DecisionRole, Outcome, Timestamp};
use gpu_market::market::decision_log::{DecisionWriter, WriterCounters};
use gpu_market::store::{Store, decisions};

fn entry(id: &str) -> DecisionEntry {
    DecisionEntry {
        id: DecisionId::from(id),
        slot: "pricing",
        role: DecisionRole::Live,
        live_id: None,
        policy: "builtin".into(),
        module_sha256: None,
        input: r#"{"gpu_id":"gpu_1"}"#.into(),
        output: r#"{"price_per_hour":1.5}"#.into(),
        outcome: Outcome::Price(1.5),
        fallback: false,
        failure_kind: None,
        failure: None,
        fuel: 10,
        duration_us: 3,
        request_id: None,
        gpu_id: Some("gpu_1".into()),
        decided_at: Timestamp::now(),
    }
}

async fn migrated_store(database: &TestDatabase) -> Store {
    let config = DatabaseConfig {
        url: Secret::new(database.url().to_owned()),
        ..DatabaseConfig::default()
    };
    let store = Store::connect(&config).await.expect("store connects");
    store.migrate().await.expect("migrations apply");
    store
}

async fn count(url: &str, sql: &str) -> i64 {
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("connect");
    let n = sqlx::query_scalar(sql)
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    n
}

#[tokio::test]
async fn the_log_moves_to_its_own_file_and_stays_there() {
    install_drivers();
    let database = TestDatabase::create().await;
    let Some(log_file) = database.decision_log_file() else {
        return; // PostgreSQL keeps the log beside the market: it has many writers.
    };
    // A market from before the move, with one logged decision.
    let old = migrate_before(database.url(), "sqlite", "0010").await;
    sqlx::query(
        "INSERT INTO policy_decisions (id, slot, role, policy, input, output, price, fallback, fuel, \
         duration_us, gpu_id, decided_at) VALUES ('dec_old', 'pricing', 'live', 'builtin', '{}', \
         '{}', 2.0, 0, 5, 1, 'gpu_1', 1)",
    )
    .execute(&old)
    .await
    .expect("old entry");
    old.close().await;

    let store = migrated_store(&database).await;
    store
        .migrate()
        .await
        .expect("migrating again changes nothing");

    let moved = decisions::get(&store, "dec_old").await.expect("read");
    assert_eq!(moved.map(|d| d.price), Some(Some(2.0)));
    decisions::insert_batch(&store, &[entry("dec_new")])
        .await
        .expect("insert");
    assert!(
        decisions::get(&store, "dec_new")
            .await
            .expect("read")
            .is_some()
    );
    store.close().await;

    let log_url = format!("sqlite://{}", log_file.display());
    assert_eq!(
        count(&log_url, "SELECT COUNT(*) FROM policy_decisions").await,
        2,
        "both entries are in the log's file"
    );
    assert_eq!(
        count(
            database.url(),
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'policy_decisions'"
        )
        .await,
        0,
        "the market's file no longer has the table"
    );
}

/// Retention by age deletes the entries decided before the bound and keeps the rest, on both backends.
#[tokio::test]
async fn retention_by_age_keeps_the_recent_entries() {
    install_drivers();
    let database = TestDatabase::create().await;
    let store = migrated_store(&database).await;
    let now = Timestamp::now();
    let hour_ago = now.minus_seconds(3600);
    let decided = |id: &str, at: Timestamp| DecisionEntry {
        decided_at: at,
        ..entry(id)
    };
    let batch = [
        decided("dec_a", hour_ago.minus_seconds(60)),
        decided("dec_b", hour_ago.minus_seconds(1)),
        decided("dec_c", now),
        decided("dec_d", now),
    ];
    decisions::insert_batch(&store, &batch)
        .await
        .expect("insert");
    let pruned = decisions::prune(&store, hour_ago, 1_000)
        .await
        .expect("prune");
    assert_eq!(pruned, 2);
    for (id, kept) in [
        ("dec_a", false),
        ("dec_b", false),
        ("dec_c", true),
        ("dec_d", true),
    ] {
        let found = decisions::get(&store, id).await.expect("read").is_some();
        assert_eq!(found, kept, "{id}");
    }
    // Everything older: all go.
    let pruned = decisions::prune(&store, now.plus_seconds(60), 1_000)
        .await
        .expect("prune");
    assert_eq!(pruned, 2);
    store.close().await;
}

/// An entry the database can never take (here: its id is logged already) is given up on after
/// `retry_ms`, alone: the entries batched with it are written, and the writer goes on without waiting
/// for a shutdown. On both backends.
#[tokio::test]
async fn an_entry_that_cannot_be_written_is_lost_alone_and_counted() {
    install_drivers();
    let database = TestDatabase::create().await;
    let store = migrated_store(&database).await;
    decisions::insert_batch(&store, &[entry("dec_taken")])
        .await
        .expect("insert");

    let log = DecisionLogConfig {
        flush_ms: 10,
        retry_ms: 200,
        ..DecisionLogConfig::default()
    };
    let counters = WriterCounters::default();
    let (writer, sender) = DecisionWriter::start(store.clone(), &log, counters.clone());
    for id in ["dec_a", "dec_taken", "dec_b"] {
        sender.send(entry(id)).await.expect("writer runs");
    }
    eventually(Duration::from_secs(20), "the batch is settled", || {
        let counters = counters.clone();
        async move { (counters.written.get() + counters.lost.get() == 3).then_some(()) }
    })
    .await;
    assert_eq!(
        counters.lost.get(),
        1,
        "only the entry that cannot be written is lost"
    );
    assert_eq!(counters.written.get(), 2);
    for id in ["dec_a", "dec_b"] {
        let found = decisions::get(&store, id).await.expect("read");
        assert!(found.is_some(), "{id} was written");
    }
    // The writer still serves.
    sender.send(entry("dec_c")).await.expect("writer runs");
    writer
        .finish(tokio::time::Instant::now() + Duration::from_secs(10))
        .await;
    assert!(
        decisions::get(&store, "dec_c")
            .await
            .expect("read")
            .is_some()
    );
    assert_eq!(counters.lost.get(), 1);
    store.close().await;
}
