//! Writes that share one commit (SQLite's group commit) still get each their own outcome: of bookings
//! of one GPU exactly one wins, a conflicting or failing write fails alone, and every answered write is
//! in the database after a reopen. On PostgreSQL (no write queue) the same writes race in the pool, and
//! the outcomes must be the same.

mod common;

use std::time::Duration;

use common::{TestDatabase, eventually};
use gpu_market::config::{DatabaseConfig, Secret};
use gpu_market::domain::{
    Booking, BookingDuration, BookingId, Capabilities, Gpu, GpuId, GpuStatus, Money, OrderId,
    PriceState, PricedBy, PrincipalId, Rating, Review, ReviewId, ReviewStatus, Timestamp,
};
use gpu_market::store::bookings::{self, BookOutcome};
use gpu_market::store::{Statement, Store, StoreError, gpus, reviews};
use sqlx::Any;
use sqlx::pool::PoolConnection;

const CONTENDERS: usize = 6;
const OTHER_GPUS: usize = 5;

async fn open(database: &TestDatabase) -> Store {
    let config = DatabaseConfig {
        url: Secret::new(database.url()),
        ..DatabaseConfig::default()
    };
    let store = Store::connect(&config).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

fn gpu(now: Timestamp) -> Gpu {
    Gpu {
        id: GpuId::generate(),
        miner_id: PrincipalId::from("miner"),
        model: "RTX 4090".to_owned(),
        model_key: "rtx4090".to_owned(),
        memory_gb: 24.0,
        cuda_version: None,
        cuda_cores: None,
        compute_capability: None,
        region: None,
        description: None,
        capabilities: Capabilities::try_from("[]".to_owned()).expect("empty capabilities"),
        asking_price: Money::from_micros(1_000_000),
        current_price: Money::from_micros(1_000_000),
        status: GpuStatus::Available,
        total_bookings: 0,
        rating_sum: 0,
        rating_count: 0,
        last_heartbeat: Some(now),
        created_at: now,
    }
}

fn booking(gpu: &Gpu, client: &str, now: Timestamp) -> Booking {
    Booking {
        id: BookingId::generate(),
        order_id: OrderId::generate(),
        gpu_id: gpu.id.clone(),
        gpu_model: gpu.model.clone(),
        miner_id: gpu.miner_id.clone(),
        client_id: PrincipalId::from(client),
        job_id: None,
        duration: BookingDuration::from_seconds(3_600),
        price_per_hour: Money::from_micros(1_000_000),
        total: Money::from_micros(1_000_000),
        refund: None,
        charged: None,
        status: gpu_market::domain::BookingStatus::Active,
        multiplier: 1.0,
        policy: "test".to_owned(),
        priced_by: PricedBy::Policy,
        extensions: 0,
        grace_until: None,
        start_at: now,
        end_at: now.plus_seconds(3_600),
        created_at: now,
        ended_at: None,
        end_reason: None,
        pricing_decision: None,
        timeout_decision: None,
    }
}

fn review(gpu_id: &GpuId, now: Timestamp) -> Review {
    Review {
        id: ReviewId::generate(),
        gpu_id: gpu_id.clone(),
        reviewer_id: PrincipalId::from("reviewer"),
        rating: Rating::new(4).expect("a valid rating"),
        comment: None,
        status: ReviewStatus::Accepted,
        moderation_reason: String::new(),
        policy: "test".to_owned(),
        created_at: now,
        decided_at: Some(now),
        decision_id: None,
    }
}

/// One statement that inserts the review twice: its first row goes in, its second fails, and the
/// statement is undone whole (a one-statement write has no savepoint of its own).
async fn failing_statement(store: &Store, review: Review) -> Result<(), StoreError> {
    let statement = Statement::new(
        "INSERT INTO reviews (id, gpu_id, reviewer_id, rating, status, policy, created_at) \
         VALUES ($1, $2, 'reviewer', 5, 'accepted', 'test', $3), ($1, $2, 'reviewer', 5, 'accepted', 'test', $3)",
    )
    .bind(review.id.to_string())
    .bind(review.gpu_id.to_string())
    .bind(review.created_at);
    store.execute(statement).await.map(|_| ())
}

/// Inserts the review, then fails (its id again): a write whose first statement succeeded.
async fn failing_write(store: &Store, review: Review) -> Result<(), StoreError> {
    let insert = Statement::new(
        "INSERT INTO reviews (id, gpu_id, reviewer_id, rating, status, policy, created_at) \
         VALUES ($1, $2, 'reviewer', 5, 'accepted', 'test', $3)",
    )
    .bind(review.id.as_str())
    .bind(review.gpu_id.as_str())
    .bind(review.created_at);
    store
        .execute_all(vec![insert.clone(), insert])
        .await
        .map(|_| ())
}

/// SQLite: takes the database's write lock on the store's sqlx writer connection, so that the write
/// queue's next group waits for it and every write sent meanwhile joins that group. `None` on
/// PostgreSQL, which has no queue.
async fn hold_the_writer(store: &Store) -> Option<PoolConnection<Any>> {
    store.write_stats()?;
    let mut held = store.writer().acquire().await.expect("the writer");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *held)
        .await
        .expect("take the write lock");
    Some(held)
}

async fn release_the_writer(held: Option<PoolConnection<Any>>) {
    if let Some(mut held) = held {
        sqlx::query("ROLLBACK")
            .execute(&mut *held)
            .await
            .expect("release the write lock");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_in_one_commit_each_get_their_own_outcome() {
    common::install_drivers();
    let database = TestDatabase::create().await;
    let store = open(&database).await;
    let now = Timestamp::now();
    let contested = gpu(now);
    let others: Vec<Gpu> = (0..OTHER_GPUS).map(|_| gpu(now)).collect();
    for gpu in std::iter::once(&contested).chain(&others) {
        gpus::insert(&store, gpu).await.expect("register");
    }
    let before = store.write_stats();

    // SQLite: while the test holds the write lock, every write below queues, and all of them go into
    // the next group once it is released.
    let held = hold_the_writer(&store).await;
    let contenders: Vec<_> = (0..CONTENDERS)
        .map(|i| {
            let (store, booking) = (
                store.clone(),
                booking(&contested, &format!("client{i}"), now),
            );
            tokio::spawn(async move { bookings::create(&store, &booking, None).await })
        })
        .collect();
    let other_bookings: Vec<_> = others
        .iter()
        .map(|gpu| {
            let (store, booking) = (store.clone(), booking(gpu, "other", now));
            tokio::spawn(async move { bookings::create(&store, &booking, None).await })
        })
        .collect();
    let accepted_review = review(&others[0].id, now);
    let review_write = {
        let (store, review) = (store.clone(), accepted_review.clone());
        tokio::spawn(async move { reviews::insert(&store, &review).await })
    };
    let half_written = review(&others[1].id, now);
    let failing = {
        let (store, review) = (store.clone(), half_written.clone());
        tokio::spawn(async move { failing_write(&store, review).await })
    };
    let failed_statement = review(&others[2].id, now);
    let failing_one_statement = {
        let (store, review) = (store.clone(), failed_statement.clone());
        tokio::spawn(async move { failing_statement(&store, review).await })
    };
    let writes = (CONTENDERS + OTHER_GPUS + 3) as u64;
    if held.is_some() {
        eventually(Duration::from_secs(10), "every write to queue", || {
            let stats = store.write_stats();
            async move { stats.filter(|s| s.waiting == writes).map(|_| ()) }
        })
        .await;
    }
    release_the_writer(held).await;

    let mut won = 0;
    for contender in contenders {
        match contender.await.expect("join").expect("booking") {
            BookOutcome::Booked => won += 1,
            BookOutcome::GpuNotAvailable(GpuStatus::Booked) => {}
            other => panic!("a losing booking of the contested GPU answered {other:?}"),
        }
    }
    assert_eq!(won, 1, "exactly one booking of the contested GPU wins");
    for other in other_bookings {
        assert_eq!(
            other.await.expect("join").expect("booking"),
            BookOutcome::Booked,
            "a conflict on another GPU does not fail this booking"
        );
    }
    review_write.await.expect("join").expect("review");
    assert!(
        failing.await.expect("join").is_err(),
        "the failing write reports its own failure"
    );
    assert!(
        failing_one_statement.await.expect("join").is_err(),
        "the failing statement reports its own failure"
    );

    if let (Some(before), Some(after)) = (before, store.write_stats()) {
        assert_eq!(
            after.groups,
            before.groups + 1,
            "all the writes shared one commit"
        );
        // Every write but the two failing ones (a lost race is an answer, not a failure).
        assert_eq!(after.committed, before.committed + writes - 2);
    }

    // Everything answered is in the database, seen from new connections; the failing write left nothing.
    store.close().await;
    let store = open(&database).await;
    let active = bookings::count_active(&store).await.expect("count");
    assert_eq!(active, 1 + OTHER_GPUS as i64);
    for gpu in std::iter::once(&contested).chain(&others) {
        assert_eq!(
            gpus::status_of(&store, &gpu.id).await.expect("status"),
            Some(GpuStatus::Booked)
        );
    }
    assert!(
        reviews::get(&store, &accepted_review.id)
            .await
            .expect("review")
            .is_some()
    );
    assert!(
        reviews::get(&store, &half_written.id)
            .await
            .expect("review")
            .is_none(),
        "a failed write is rolled back to its savepoint, its first statement too"
    );
    assert!(
        reviews::get(&store, &failed_statement.id)
            .await
            .expect("review")
            .is_none(),
        "a failed statement is undone whole, its first row too"
    );
    let counted = gpus::get(&store, &others[0].id)
        .await
        .expect("gpu")
        .expect("the reviewed GPU");
    assert_eq!((counted.rating_sum, counted.rating_count), (4, 1));
    store.close().await;
}

/// A booking is one write with its quote's guardrail state: when the state's statement fails after the
/// booking's row went in (a trigger rejects it here), the booking is undone with it, its GPU stays
/// available, and a booking committed in the same group keeps its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_whose_guardrail_state_fails_leaves_nothing_behind() {
    common::install_drivers();
    let database = TestDatabase::create().await;
    let store = open(&database).await;
    let reject_states = if database.is_postgres() {
        "CREATE FUNCTION test_reject_state() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'state rejected'; END $$; \
         CREATE TRIGGER test_reject_state BEFORE INSERT ON gpu_price_state \
         FOR EACH ROW EXECUTE FUNCTION test_reject_state();"
    } else {
        "CREATE TRIGGER test_reject_state BEFORE INSERT ON gpu_price_state \
         BEGIN SELECT RAISE(ABORT, 'state rejected'); END;"
    };
    sqlx::raw_sql(reject_states)
        .execute(store.writer())
        .await
        .expect("install the rejecting trigger");
    let now = Timestamp::now();
    let (rejected, neighbour) = (gpu(now), gpu(now));
    for gpu in [&rejected, &neighbour] {
        gpus::insert(&store, gpu).await.expect("register");
    }
    let state = PriceState {
        anchor_price: 1.0,
        anchor_unix: now.unix_seconds(),
        last_price: 1.0,
        last_multiplier: 1.0,
    };
    // SQLite: both bookings queue behind the held write lock and share the next group.
    let held = hold_the_writer(&store).await;
    let with_state = {
        let (store, booking) = (store.clone(), booking(&rejected, "client", now));
        tokio::spawn(async move { bookings::create(&store, &booking, Some(&state)).await })
    };
    let without_state = {
        let (store, booking) = (store.clone(), booking(&neighbour, "client", now));
        tokio::spawn(async move { bookings::create(&store, &booking, None).await })
    };
    if held.is_some() {
        eventually(Duration::from_secs(5), "both bookings queued", || {
            let waiting = store.write_stats().map_or(0, |stats| stats.waiting);
            async move { (waiting >= 2).then_some(()) }
        })
        .await;
    }
    release_the_writer(held).await;
    let failed = with_state.await.expect("task");
    assert!(
        failed.is_err(),
        "the state's failure fails the booking: {failed:?}"
    );
    assert!(matches!(
        without_state.await.expect("task"),
        Ok(BookOutcome::Booked)
    ));
    assert_eq!(
        gpus::status_of(&store, &rejected.id).await.expect("status"),
        Some(GpuStatus::Available),
        "the booking's claim on its GPU is undone with it"
    );
    assert!(
        bookings::active_for_gpu(&store, &rejected.id)
            .await
            .expect("active booking")
            .is_none()
    );
    assert_eq!(
        gpus::status_of(&store, &neighbour.id)
            .await
            .expect("status"),
        Some(GpuStatus::Booked)
    );
    store.close().await;
}

/// Many concurrent bookings and releases over a few GPUs: never two active bookings on one GPU, and
/// every answer matches what the database holds at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bookings_and_releases_never_double_book() {
    common::install_drivers();
    let database = TestDatabase::create().await;
    let store = open(&database).await;
    let now = Timestamp::now();
    let fleet: Vec<Gpu> = (0..4).map(|_| gpu(now)).collect();
    for gpu in &fleet {
        gpus::insert(&store, gpu).await.expect("register");
    }
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = store.clone();
            let booking = booking(&fleet[i % fleet.len()], &format!("client{i}"), now);
            tokio::spawn(async move {
                let outcome = bookings::create(&store, &booking, None).await?;
                if outcome != BookOutcome::Booked || i % 2 == 1 {
                    return Ok::<_, StoreError>((outcome, None));
                }
                // Every other winner releases at once, racing the other bookings of its GPU.
                let ending = bookings::Ending {
                    booking_id: &booking.id,
                    status: gpu_market::domain::BookingStatus::Completed,
                    ended_at: now,
                    refund: Money::from_micros(0),
                    charged: booking.total,
                    reason: "test",
                    heartbeat_cutoff: Timestamp::from_micros(0),
                    expected_end_at: booking.end_at,
                    decision: None,
                };
                let ended = bookings::end(&store, &ending).await?;
                Ok((outcome, Some((booking.id.clone(), ended))))
            })
        })
        .collect();
    let mut still_active = 0;
    for task in tasks {
        let (outcome, released) = task.await.expect("join").expect("store");
        match (outcome, released) {
            (BookOutcome::Booked, Some((_, true))) => {}
            (BookOutcome::Booked, Some((id, false))) => panic!("release of {id} was refused"),
            (BookOutcome::Booked, None) => still_active += 1,
            (BookOutcome::GpuNotAvailable(_), _) => {}
            (other, _) => panic!("unexpected outcome {other:?}"),
        }
    }
    assert!(
        still_active <= fleet.len(),
        "{still_active} active bookings on {} GPUs",
        fleet.len()
    );
    assert_eq!(
        bookings::count_active(&store).await.expect("count"),
        still_active as i64
    );
    for gpu in &fleet {
        let active = bookings::active_for_gpu(&store, &gpu.id)
            .await
            .expect("active");
        let status = gpus::status_of(&store, &gpu.id).await.expect("status");
        let expected = if active.is_some() {
            GpuStatus::Booked
        } else {
            GpuStatus::Available
        };
        assert_eq!(status, Some(expected), "GPU status follows its bookings");
    }
    store.close().await;
}

/// The bundled SQLite is compiled as `.cargo/config.toml` says (bench/load.sh measured the write path
/// with it): a build that lost the flags (run from elsewhere, or a libsqlite3-sys that ignores them)
/// would serve with a page cache behind one process-wide mutex and a malloc per page read.
#[tokio::test]
async fn sqlite_is_built_with_the_measured_options() {
    common::install_drivers();
    let database = TestDatabase::create().await;
    if database.is_postgres() {
        return;
    }
    let store = open(&database).await;
    let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options")
        .fetch_all(store.reader())
        .await
        .expect("compile options");
    for wanted in ["DEFAULT_MEMSTATUS=0", "DEFAULT_PCACHE_INITSZ=128"] {
        assert!(
            options.iter().any(|option| option == wanted),
            "SQLite lacks {wanted}: {options:?}"
        );
    }
    assert!(
        !options
            .iter()
            .any(|option| option == "ENABLE_MEMORY_MANAGEMENT"),
        "SQLite is built with ENABLE_MEMORY_MANAGEMENT: {options:?}"
    );
    store.close().await;
}

/// SQLite's writers leave the write-ahead log's checkpoints to a connection of their own, so that a
/// group's commit never stops to copy the log into the database file; the log still gets there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_ahead_log_is_checkpointed_off_the_writer() {
    common::install_drivers();
    let database = TestDatabase::create().await;
    let Some(file) = database.sqlite_file() else {
        return;
    };
    let store = open(&database).await;
    for writer in [store.writer(), store.decision_log().writer()] {
        let pages: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(writer)
            .await
            .expect("wal_autocheckpoint");
        assert_eq!(pages, 0, "a writer checkpoints inside its commits");
    }
    let now = Timestamp::now();
    let registered = (0..300).map(|_| {
        let store = store.clone();
        async move { gpus::insert(&store, &gpu(now)).await.expect("register") }
    });
    futures_util::future::join_all(registered).await;
    // Every page of the database, as a reader sees it through the log, is in the file: only a
    // checkpoint writes the file, and the writer made none.
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(store.reader())
        .await
        .expect("page size");
    let in_file = |pages: i64| {
        let len = std::fs::metadata(file).map_or(0, |meta| meta.len());
        i64::try_from(len).is_ok_and(|len| len >= pages * page_size)
    };
    eventually(Duration::from_secs(10), "a checkpoint of the log", || {
        let store = store.clone();
        async move {
            let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
                .fetch_one(store.reader())
                .await
                .expect("page count");
            in_file(pages).then_some(())
        }
    })
    .await;
    let stats = store.write_stats().expect("SQLite has a write queue");
    assert!(stats.checkpoints > 0, "{stats:?}");
    assert_eq!(stats.checkpoint_failures, 0, "{stats:?}");
    store.close().await;
}

/// The booking path's reads (on SQLite, rusqlite connections on the caller's thread with their own
/// decoding by column position) give back every field that was written, as the general reads do.
#[tokio::test]
async fn the_booking_path_reads_back_every_field_written() {
    let database = TestDatabase::create().await;
    let store = open(&database).await;
    let now = Timestamp::now();
    let gpu = Gpu {
        cuda_version: Some("12.4".to_owned()),
        cuda_cores: Some(16_384),
        compute_capability: Some("8.9".to_owned()),
        region: Some("eu-west".to_owned()),
        description: Some("rack 7".to_owned()),
        capabilities: Capabilities::try_from(r#"["cuda","llm"]"#.to_owned()).expect("capabilities"),
        current_price: Money::from_micros(1_250_000),
        ..gpu(now)
    };
    gpus::insert(&store, &gpu).await.expect("register");
    let state = PriceState {
        anchor_price: 1.5,
        anchor_unix: now.unix_seconds(),
        last_price: 1.25,
        last_multiplier: 1.1,
    };
    let booking = Booking {
        job_id: Some("job-7".to_owned()),
        multiplier: 1.1,
        priced_by: PricedBy::Fallback,
        ..booking(&gpu, "client", now)
    };
    let outcome = bookings::create(&store, &booking, Some(&state)).await;
    assert_eq!(outcome.expect("book"), BookOutcome::Booked);

    let active = bookings::active_for_gpu(&store, &gpu.id)
        .await
        .expect("read");
    assert_eq!(active.as_ref(), Some(&booking));
    let (read, counts, read_state) = gpus::get_for_booking(&store, &gpu.id)
        .await
        .expect("read")
        .expect("the GPU");
    let general = gpus::get(&store, &gpu.id)
        .await
        .expect("read")
        .expect("the GPU");
    assert_eq!(read, general);
    assert_eq!(read.status, GpuStatus::Booked);
    assert_eq!(
        Gpu {
            status: GpuStatus::Available,
            total_bookings: gpu.total_bookings,
            ..read
        },
        gpu
    );
    assert_eq!((counts.total, counts.booked), (1, 1));
    assert_eq!(read_state, Some(state));
    let missing = gpus::get_for_booking(&store, &GpuId::generate()).await;
    assert!(missing.expect("read").is_none());
    store.close().await;
}

/// SQLite writes its log from the start again only when a write begins with all of the log copied
/// into the database file. With commits landing while the checkpointer copies, that never happened
/// under load and the log grew without end; so the writer copies the rest itself after each of the
/// checkpointer's passes. Under writes that keep coming, the log must start over: the checkpoint
/// sequence number in its header (bytes 12-15, big-endian) counts the restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_steady_writes_the_log_starts_over_instead_of_growing() {
    common::install_drivers();
    let database = TestDatabase::create().await;
    let Some(file) = database.sqlite_file() else {
        return;
    };
    let log = std::path::PathBuf::from(format!("{}-wal", file.display()));
    let restarts = || {
        use std::io::Read;
        let mut header = [0u8; 16];
        std::fs::File::open(&log)
            .and_then(|mut f| f.read_exact(&mut header))
            .map_or(0, |()| {
                u32::from_be_bytes([header[12], header[13], header[14], header[15]])
            })
    };
    let store = open(&database).await;
    let before = restarts();
    let now = Timestamp::now();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let registered = (0..32).map(|_| {
            let store = store.clone();
            async move { gpus::insert(&store, &gpu(now)).await.expect("register") }
        });
        futures_util::future::join_all(registered).await;
        let stats = store.write_stats().expect("SQLite has a write queue");
        if stats.log_caught_up >= 3 && restarts() > before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the log never started over under steady writes: {stats:?}, restarts {} -> {}",
            before,
            restarts()
        );
    }
    store.close().await;
}

/// SQLite writes a commit's log frames as two writes each (a header, then the page); the writer's
/// connection hands a commit's back-to-back writes to the file together (`store::log_writes`), so a
/// group of registrations reaches the log in a few system calls, and every one of them is read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_log_writes_reach_the_file_in_a_few_calls() {
    common::install_drivers();
    let database = TestDatabase::create().await;
    if database.sqlite_file().is_none() {
        return;
    }
    let store = open(&database).await;
    let before = store.write_stats().expect("SQLite has a write queue");
    let now = Timestamp::now();
    let registered = (0..64).map(|_| {
        let store = store.clone();
        async move {
            let gpu = gpu(now);
            gpus::insert(&store, &gpu).await.expect("register");
            gpu.id
        }
    });
    let ids = futures_util::future::join_all(registered).await;
    let after = store.write_stats().expect("SQLite has a write queue");
    let writes = after.log_writes - before.log_writes;
    let calls = after.log_write_calls - before.log_write_calls;
    assert!(
        calls > 0 && calls * 4 <= writes,
        "{writes} log writes in {calls} calls"
    );
    for id in &ids {
        let read = gpus::get(&store, id).await.expect("read back");
        assert!(read.is_some(), "{id} was acknowledged but is not there");
    }
    store.close().await;
}

/// PostgreSQL: a caller that gives up on a transaction while its `BEGIN` is on the wire (a client
/// that hangs up, say) leaves no connection inside a transaction the server keeps open, where a
/// later autocommit write would never commit. Cancelled after ever longer waits, so some
/// cancellations fall while `BEGIN` awaits its answer.
#[tokio::test]
async fn a_begin_its_caller_gives_up_on_leaves_no_transaction_open() {
    let database = TestDatabase::create().await;
    if !database.is_postgres() {
        return;
    }
    let name = format!("gm_begin_{}", uuid::Uuid::new_v4().simple());
    let separator = if database.url().contains('?') {
        '&'
    } else {
        '?'
    };
    let config = DatabaseConfig {
        url: Secret::new(format!(
            "{}{separator}application_name={name}",
            database.url()
        )),
        ..DatabaseConfig::default()
    };
    let store = Store::connect(&config).await.expect("connect");
    for wait_us in (0..3_000).step_by(25) {
        let _ = tokio::time::timeout(
            Duration::from_micros(wait_us),
            gpu_market::store::begin(store.reader()),
        )
        .await;
    }
    let observer = sqlx::AnyPool::connect(database.url())
        .await
        .expect("observer");
    let open_transactions = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1 \
             AND state LIKE 'idle in transaction%'",
        )
        .bind(name.clone())
        .fetch_one(&observer)
        .await
        .expect("activity")
    };
    // A dropped transaction's rollback goes out when its connection returns to the pool.
    eventually(
        Duration::from_secs(10),
        "no connection left inside a transaction",
        || async { (open_transactions().await == 0).then_some(()) },
    )
    .await;
}
