//! Shared harness for the black-box tests: a real server on a random port over a fresh database per test
//! (a SQLite file in a temp dir, or a fresh PostgreSQL schema when `GPU_MARKET_TEST_POSTGRES_URL` is
//! set), a client that speaks like the aitbc CLI, and a second connection pool for assertions on the
//! database itself.
//!
//! Not every test file uses every helper.
#![allow(dead_code)]

pub mod process;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use gpu_market::config::{ApiKeyConfig, Config, Role, Secret};
use gpu_market::policy::Policies;
use gpu_market::server::RunningServer;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sqlx::{AnyPool, Column, Row};

/// When set (e.g. `postgres://postgres@127.0.0.1:5432/test`), every test runs on its own fresh
/// PostgreSQL schema created in the database this URL names. A run with it set must fail, never skip, when the
/// server cannot be reached.
pub const POSTGRES_ENV: &str = "GPU_MARKET_TEST_POSTGRES_URL";

/// The id shapes of the contract: prefix + 32 lower-case hex digits.
pub fn assert_id(value: &Value, prefix: &str) -> String {
    let id = value
        .as_str()
        .unwrap_or_else(|| panic!("id is not a string: {value}"));
    let hex = id
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("id {id} lacks the prefix {prefix}"));
    assert_eq!(
        hex.len(),
        32,
        "id {id} should carry 32 hex digits after {prefix}"
    );
    assert!(
        hex.chars().all(|c| c.is_ascii_hexdigit()),
        "id {id} is not hex after {prefix}"
    );
    id.to_owned()
}

/// An RFC 3339 UTC timestamp ending in `Z`; returns it as unix microseconds.
pub fn assert_timestamp(value: &Value) -> i64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("timestamp is not a string: {value}"));
    assert!(
        text.ends_with('Z'),
        "timestamp {text} should be UTC with a Z suffix"
    );
    let parsed = chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|err| panic!("timestamp {text} is not RFC 3339: {err}"));
    parsed.timestamp_micros()
}

/// A JSON money amount as integer micro-AITBC (the API prints at most 6 decimals).
pub fn micros(value: &Value) -> i64 {
    let units = value
        .as_f64()
        .unwrap_or_else(|| panic!("amount is not a number: {value}"));
    (units * 1_000_000.0).round() as i64
}

/// Every number in `value` is written with at most 6 decimals (money is micro-AITBC; nothing prints
/// float noise such as `0.49999949999999997`).
pub fn assert_at_most_six_decimals(value: &Value) {
    match value {
        Value::Number(number) => {
            let text = number.to_string();
            if let Some((_, decimals)) = text.split_once('.') {
                let digits = decimals.split(['e', 'E']).next().unwrap_or("");
                assert!(
                    digits.len() <= 6 && !text.contains(['e', 'E']),
                    "number {text} has float noise"
                );
            }
        }
        Value::Array(items) => items.iter().for_each(assert_at_most_six_decimals),
        Value::Object(fields) => fields.values().for_each(assert_at_most_six_decimals),
        _ => {}
    }
}

/// The JSON error convention: a `detail` holding a non-empty human sentence.
pub fn assert_detail(reply: &Reply) {
    let detail = reply.body.get("detail").unwrap_or_else(|| {
        panic!(
            "error {} without a JSON `detail`: {}",
            reply.status, reply.text
        )
    });
    let detail = detail
        .as_str()
        .unwrap_or_else(|| panic!("`detail` is not a string: {detail}"));
    assert!(!detail.trim().is_empty(), "`detail` is empty");
}

/// Polls `check` until it returns `Some`, failing with `what` after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The schema of `backend` (`sqlite`, `postgres`) as it was before migration `version` (`"0008"`):
/// the earlier migrations only, from a copy of their files, run on a pool of `url` that is returned.
pub async fn migrate_before(url: &str, backend: &str, version: &str) -> AnyPool {
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let earlier = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(&all).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.get(..4).is_some_and(|v| v < version) {
            std::fs::copy(&path, earlier.path().join(name)).expect("copy migration");
        }
    }
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("connect");
    sqlx::migrate::Migrator::new(earlier.path())
        .await
        .expect("migrator")
        .run(&pool)
        .await
        .expect("earlier migrations");
    pool
}

pub fn install_drivers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

/// A database that exists for one test only.
pub struct TestDatabase {
    url: String,
    kind: DatabaseKind,
}

enum DatabaseKind {
    Sqlite {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
    },
    Postgres {
        admin_url: String,
        name: String,
    },
}

impl TestDatabase {
    pub async fn create() -> Self {
        match std::env::var(POSTGRES_ENV) {
            Ok(admin_url) if !admin_url.trim().is_empty() => Self::create_postgres(admin_url).await,
            _ => Self::create_sqlite(),
        }
    }

    fn create_sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the SQLite database");
        let path = dir.path().join("gpu-market.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Self {
            url,
            kind: DatabaseKind::Sqlite { _dir: dir, path },
        }
    }

    /// A fresh schema in the database `admin_url` names, reached through a URL whose `search_path` is
    /// that schema: as isolated as a database for the service (which never names a schema), and
    /// created and dropped in milliseconds where a database takes seconds.
    async fn create_postgres(admin_url: String) -> Self {
        use sqlx::Connection;
        let name = format!("gm_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::postgres::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|err| {
                panic!("{POSTGRES_ENV} is set but PostgreSQL cannot be reached: {err}")
            });
        sqlx::query(&format!("CREATE SCHEMA \"{name}\""))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|err| panic!("cannot create test schema {name}: {err}"));
        let _ = conn.close().await;
        let mut url =
            reqwest::Url::parse(&admin_url).expect("GPU_MARKET_TEST_POSTGRES_URL is a URL");
        url.query_pairs_mut()
            .append_pair("options", &format!("-c search_path={name}"))
            // Names the service's connections, so that cleanup can end them first.
            .append_pair("application_name", &name);
        Self {
            url: url.to_string(),
            kind: DatabaseKind::Postgres { admin_url, name },
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.kind, DatabaseKind::Postgres { .. })
    }

    /// SQLite: the market's database file.
    pub fn sqlite_file(&self) -> Option<&std::path::Path> {
        match &self.kind {
            DatabaseKind::Sqlite { path, .. } => Some(path),
            DatabaseKind::Postgres { .. } => None,
        }
    }

    /// SQLite: the decision log's own file, beside the market's (`x.db` → `x.decisions.db`).
    pub fn decision_log_file(&self) -> Option<std::path::PathBuf> {
        match &self.kind {
            DatabaseKind::Sqlite { path, .. } => Some(path.with_extension("decisions.db")),
            DatabaseKind::Postgres { .. } => None,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let DatabaseKind::Postgres { admin_url, name } = &self.kind else {
            return;
        };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        // Best effort, on a thread of its own: Drop cannot await, and the test's runtime may be ending.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::postgres::PgConnection::connect(&admin_url).await {
                    // Like DROP DATABASE ... WITH (FORCE): the server may still hold locks, and its
                    // runtime may be the thread waiting for us.
                    let _ = sqlx::query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE application_name = $1 AND pid <> pg_backend_pid()",
                    )
                    .bind(&name)
                    .execute(&mut conn)
                    .await;
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// A response, read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    /// The body parsed as JSON, or `Value::Null` when it is not JSON.
    pub body: Value,
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            body,
        }
    }

    /// Asserts the status, printing the body when it differs.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        &self.body
    }

    #[track_caller]
    pub fn expect_error(&self, status: u16) {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        assert_detail(self);
    }
}

/// Keys used by the tests that run with roles (`TestApp::spawn_with_keys`).
pub const ADMIN_KEY: &str = "admin-key-0000";
pub const ALICE_KEY: &str = "alice-key-1111"; // client
pub const CAROL_KEY: &str = "carol-key-2222"; // client
pub const BOB_KEY: &str = "bob-key-3333"; // miner
pub const DAVE_KEY: &str = "dave-key-4444"; // miner

pub fn test_keys() -> Vec<ApiKeyConfig> {
    let key = |key: &str, principal: &str, roles: &[Role]| ApiKeyConfig {
        key: Secret::new(key),
        principal: principal.to_owned(),
        roles: roles.to_vec(),
    };
    vec![
        key(ADMIN_KEY, "admin", &[Role::Admin]),
        key(ALICE_KEY, "alice", &[Role::Client]),
        key(CAROL_KEY, "carol", &[Role::Client]),
        key(BOB_KEY, "bob", &[Role::Miner]),
        key(DAVE_KEY, "dave", &[Role::Miner]),
    ]
}

/// Copies the repository's `policies/` (modules and `policies.toml`) into `dir`.
pub fn copy_shipped_policies(dir: &std::path::Path) {
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
    for entry in std::fs::read_dir(&shipped).expect("the shipped policies directory") {
        let path = entry.expect("a policies entry").path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).expect("copy a policy file");
        }
    }
}

/// The configuration every test starts from: random port, empty policy dir (built-in policies), fast
/// background intervals.
pub fn test_config(database_url: &str, policies_dir: PathBuf) -> Config {
    let mut config = Config {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        policies_dir,
        ..Config::default()
    };
    config.database.url = Secret::new(database_url);
    config.booking.sweep_interval_ms = 100;
    config.heartbeat.timeout_seconds = 1;
    config.heartbeat.check_interval_ms = 100;
    config.pricing.refresh_interval_ms = 1_000;
    // Tests leave the user's cache directory alone; tests/policy_cache.rs gives its servers their own.
    config.policy_cache.max_mib = 0;
    config
}

enum Server {
    Running(RunningServer),
    Custom {
        addr: SocketAddr,
        shutdown: tokio_util::sync::CancellationToken,
        handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    },
}

impl Server {
    fn local_addr(&self) -> SocketAddr {
        match self {
            Server::Running(server) => server.local_addr(),
            Server::Custom { addr, .. } => *addr,
        }
    }
}

/// One running service on its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub config: Config,
    server: Option<Server>,
    pool: AnyPool,
    _policies: tempfile::TempDir,
    // Last: the database outlives the server and the pool that use it.
    database: TestDatabase,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Local mode is the default; this one configures [`test_keys`].
    pub async fn spawn_with_keys() -> Self {
        Self::spawn_with(|config| config.keys = test_keys()).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start(None, false, adjust).await
    }

    /// Runs the service on a copy of the shipped `policies/` (the default WebAssembly policies and
    /// their `policies.toml`) instead of the built-in rules; `adjust` sees the copy's path in
    /// `config.policies_dir` and may edit it before the server starts.
    pub async fn spawn_with_shipped_policies(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start(None, true, adjust).await
    }

    /// Runs the service with the given policies in place of the built-in ones (still over HTTP, with
    /// the real background tasks).
    pub async fn spawn_with_policies(
        policies: Arc<dyn Policies>,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        Self::start(Some(policies), false, adjust).await
    }

    async fn start(
        policies: Option<Arc<dyn Policies>>,
        shipped: bool,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        install_drivers();
        let database = TestDatabase::create().await;
        let policies_dir = tempfile::tempdir().expect("temp policies dir");
        if shipped {
            copy_shipped_policies(policies_dir.path());
        }
        let mut config = test_config(database.url(), policies_dir.path().to_owned());
        adjust(&mut config);
        let server = match policies {
            None => {
                let running = gpu_market::server::spawn(config.clone())
                    .await
                    .expect("server starts");
                Server::Running(running)
            }
            Some(policies) => {
                let app = gpu_market::server::App::build_with_policies(config.clone(), policies)
                    .await
                    .expect("app builds");
                let listener = tokio::net::TcpListener::bind(config.bind)
                    .await
                    .expect("bind");
                let addr = listener.local_addr().unwrap();
                let shutdown = tokio_util::sync::CancellationToken::new();
                let handle = tokio::spawn(app.serve(listener, shutdown.clone()));
                Server::Custom {
                    addr,
                    shutdown,
                    handle,
                }
            }
        };
        let addr = server.local_addr();
        // On SQLite the decision log has a file of its own, which the service's readers attach.
        let attach_log = database.decision_log_file().map(|file| {
            format!(
                "ATTACH DATABASE '{}' AS decision_log",
                file.display().to_string().replace('\'', "''")
            )
        });
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(move |conn, _| {
                let attach = attach_log.clone();
                Box::pin(async move {
                    if let Some(attach) = attach {
                        sqlx::Executor::execute(conn, attach.as_str()).await?;
                    }
                    Ok(())
                })
            })
            .connect(database.url())
            .await
            .expect("assertion pool connects");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            addr,
            base: format!("http://{addr}"),
            client,
            config,
            server: Some(server),
            pool,
            _policies: policies_dir,
            database,
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.database.is_postgres()
    }

    pub fn database_url(&self) -> &str {
        self.database.url()
    }

    /// A pool on the service's database, for assertions.
    pub fn db(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn shutdown(mut self) {
        match self.server.take() {
            Some(Server::Running(server)) => server.shutdown().await,
            Some(Server::Custom {
                shutdown, handle, ..
            }) => {
                shutdown.cancel();
                let _ = handle.await;
            }
            None => {}
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    // ---- raw requests -------------------------------------------------------------------------

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        Reply::read(request.send().await.expect("request reaches the server")).await
    }

    /// GET as the aitbc client does it: with an empty `X-Api-Key`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.client.get(self.url(path)).header("X-Api-Key", ""))
            .await
    }

    pub async fn get_as(&self, path: &str, key: &str) -> Reply {
        self.send(self.client.get(self.url(path)).header("X-Api-Key", key))
            .await
    }

    /// POST a JSON body with an empty `X-Api-Key`.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.post_as(path, body, "").await
    }

    pub async fn post_as(&self, path: &str, body: &Value, key: &str) -> Reply {
        self.send(
            self.client
                .post(self.url(path))
                .header("X-Api-Key", key)
                .json(body),
        )
        .await
    }

    /// POST with no body at all (what the client does for release).
    pub async fn post_empty(&self, path: &str) -> Reply {
        self.post_empty_as(path, "").await
    }

    pub async fn post_empty_as(&self, path: &str, key: &str) -> Reply {
        self.send(self.client.post(self.url(path)).header("X-Api-Key", key))
            .await
    }

    /// POST raw bytes labelled as JSON.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Reply {
        self.send(
            self.client
                .post(self.url(path))
                .header("X-Api-Key", "")
                .header("Content-Type", "application/json")
                .body(body),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.delete_as(path, "").await
    }

    pub async fn delete_as(&self, path: &str, key: &str) -> Reply {
        self.send(self.client.delete(self.url(path)).header("X-Api-Key", key))
            .await
    }

    // ---- marketplace helpers ------------------------------------------------------------------

    /// Registers exactly as the client does: `{"gpu": {...}}` with `X-Api-Key: ""` and
    /// `X-Miner-ID: default`.
    pub async fn register_raw(&self, gpu: Value) -> Reply {
        self.register_raw_as(gpu, "", "default").await
    }

    pub async fn register_raw_as(&self, gpu: Value, key: &str, miner_id: &str) -> Reply {
        self.send(
            self.client
                .post(self.url("/v1/marketplace/gpu/register"))
                .header("X-Api-Key", key)
                .header("X-Miner-ID", miner_id)
                .json(&json!({ "gpu": gpu })),
        )
        .await
    }

    /// Registers and returns the new `gpu_id`, asserting 201.
    pub async fn register(&self, gpu: Value) -> String {
        let reply = self.register_raw(gpu).await;
        assert_id(&reply.expect(201)["gpu_id"], "gpu_")
    }

    pub async fn register_as(&self, gpu: Value, key: &str, miner_id: &str) -> String {
        let reply = self.register_raw_as(gpu, key, miner_id).await;
        assert_id(&reply.expect(201)["gpu_id"], "gpu_")
    }

    /// A GPU with a name and price only.
    pub async fn register_gpu(&self, name: &str, price_per_hour: f64) -> String {
        self.register(json!({ "name": name, "memory_gb": 24, "price_per_hour": price_per_hour }))
            .await
    }

    pub async fn book_raw(&self, gpu_id: &str, hours: f64) -> Reply {
        self.book_raw_as(gpu_id, hours, "").await
    }

    pub async fn book_raw_as(&self, gpu_id: &str, hours: f64, key: &str) -> Reply {
        let body = json!({ "gpu_id": gpu_id, "duration_hours": hours });
        self.post_as(&format!("/v1/marketplace/gpu/{gpu_id}/book"), &body, key)
            .await
    }

    /// Books and returns the 201 body.
    pub async fn book(&self, gpu_id: &str, hours: f64) -> Value {
        self.book_raw(gpu_id, hours).await.expect(201).clone()
    }

    pub async fn book_as(&self, gpu_id: &str, hours: f64, key: &str) -> Value {
        self.book_raw_as(gpu_id, hours, key)
            .await
            .expect(201)
            .clone()
    }

    pub async fn release_raw(&self, gpu_id: &str) -> Reply {
        self.post_empty(&format!("/v1/marketplace/gpu/{gpu_id}/release"))
            .await
    }

    pub async fn release_raw_as(&self, gpu_id: &str, key: &str) -> Reply {
        self.post_empty_as(&format!("/v1/marketplace/gpu/{gpu_id}/release"), key)
            .await
    }

    pub async fn release(&self, gpu_id: &str) -> Value {
        self.release_raw(gpu_id).await.expect(200).clone()
    }

    pub async fn details(&self, gpu_id: &str) -> Value {
        self.get(&format!("/v1/marketplace/gpu/{gpu_id}"))
            .await
            .expect(200)
            .clone()
    }

    /// The ids of a list response, in order.
    pub async fn list_ids(&self, query: &str) -> Vec<String> {
        let reply = self.get(&format!("/v1/marketplace/gpu/list{query}")).await;
        ids_of(reply.expect(200))
    }

    pub async fn heartbeat(&self, gpu_id: &str) -> Reply {
        self.post_empty(&format!("/v1/marketplace/gpu/{gpu_id}/heartbeat"))
            .await
    }

    pub async fn review(&self, gpu_id: &str, rating: Value, comment: Value) -> Reply {
        let body = json!({ "rating": rating, "comment": comment });
        self.post(&format!("/v1/marketplace/gpu/{gpu_id}/reviews"), &body)
            .await
    }

    // ---- database assertions ------------------------------------------------------------------

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(self.db())
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"))
    }

    pub async fn active_bookings(&self, gpu_id: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM bookings WHERE gpu_id = $1 AND status = 'active'",
        )
        .bind(gpu_id.to_owned())
        .fetch_one(self.db())
        .await
        .unwrap()
    }

    /// One booking row (which is also its order).
    pub async fn booking_row(&self, booking_id: &str) -> BookingRow {
        let row = sqlx::query(
            "SELECT id, order_id, gpu_id, client_id, status, duration_seconds, price_micro, total_micro, \
             refund_micro, charged_micro, start_at, end_at, ended_at FROM bookings WHERE id = $1",
        )
        .bind(booking_id.to_owned())
        .fetch_one(self.db())
        .await
        .unwrap_or_else(|err| panic!("booking {booking_id} in the database: {err}"));
        BookingRow::from_row(&row)
    }

    /// Every user-visible table, row by row, for "an error changes nothing". `price_samples` is left
    /// out: the history sampler writes it on its own schedule.
    pub async fn snapshot(&self) -> Snapshot {
        let mut tables = BTreeMap::new();
        for table in ["gpus", "bookings", "reviews", "bids"] {
            let rows = sqlx::query(&format!("SELECT * FROM {table} ORDER BY id"))
                .fetch_all(self.db())
                .await
                .unwrap_or_else(|err| panic!("snapshot of {table}: {err}"));
            let rows = rows.iter().map(row_to_strings).collect();
            tables.insert(table.to_owned(), rows);
        }
        Snapshot { tables }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub tables: BTreeMap<String, Vec<Vec<(String, String)>>>,
}

fn row_to_strings(row: &sqlx::any::AnyRow) -> Vec<(String, String)> {
    (0..row.len())
        .map(|i| {
            let name = row.column(i).name().to_owned();
            let value = if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                format!("{v:?}")
            } else if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                format!("{v:?}")
            } else if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
                format!("{v:?}")
            } else if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
                format!("{v:?}")
            } else {
                "<undecodable>".to_owned()
            };
            (name, value)
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct BookingRow {
    pub id: String,
    pub order_id: String,
    pub gpu_id: String,
    pub client_id: String,
    pub status: String,
    pub duration_seconds: i64,
    pub price_micro: i64,
    pub total_micro: i64,
    pub refund_micro: Option<i64>,
    pub charged_micro: Option<i64>,
    pub start_at: i64,
    pub end_at: i64,
    pub ended_at: Option<i64>,
}

impl BookingRow {
    pub fn from_row(row: &sqlx::any::AnyRow) -> Self {
        Self {
            id: row.get("id"),
            order_id: row.get("order_id"),
            gpu_id: row.get("gpu_id"),
            client_id: row.get("client_id"),
            status: row.get("status"),
            duration_seconds: row.get("duration_seconds"),
            price_micro: row.get("price_micro"),
            total_micro: row.get("total_micro"),
            refund_micro: row.get("refund_micro"),
            charged_micro: row.get("charged_micro"),
            start_at: row.get("start_at"),
            end_at: row.get("end_at"),
            ended_at: row.get("ended_at"),
        }
    }
}

pub fn ids_of(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("expected a JSON array, got {list}"))
        .iter()
        .map(|gpu| {
            gpu["id"]
                .as_str()
                .expect("GPU object has a string id")
                .to_owned()
        })
        .collect()
}

/// `total × used / duration`, rounded half away from zero, in 128-bit integers: the pro-rata charge.
pub fn pro_rata(total_micro: i64, used_seconds: i64, duration_seconds: i64) -> i64 {
    let scaled = total_micro as i128 * used_seconds as i128;
    let d = duration_seconds as i128;
    ((scaled + d / 2) / d) as i64
}

// ---- raw HTTP, for requests that must stay in flight ------------------------------------------

/// Opens a connection and sends a request whose body stops after `sent` of its bytes: the server
/// holds the request in flight until [`finish_request`] sends the rest (or gives up on it).
pub async fn partial_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    sent: usize,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the server");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("send head");
    stream
        .write_all(&body[..sent.min(body.len())])
        .await
        .expect("send the start of the body");
    stream.flush().await.expect("flush");
    stream
}

/// Sends the rest of the body and reads the answer.
pub async fn finish_request(mut stream: tokio::net::TcpStream, rest: &[u8]) -> RawReply {
    use tokio::io::AsyncWriteExt;
    stream
        .write_all(rest)
        .await
        .expect("send the rest of the body");
    read_raw_reply(stream).await
}

/// An answer read off a raw connection.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Value,
    pub text: String,
}

/// Reads until the server closes the connection (requests are sent with `Connection: close`).
pub async fn read_raw_reply(mut stream: tokio::net::TcpStream) -> RawReply {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut bytes))
        .await
        .expect("the server answers within a minute");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    RawReply {
        status,
        headers,
        body: serde_json::from_str(body).unwrap_or(Value::Null),
        text: body.to_owned(),
    }
}

// ---- the real binary ----------------------------------------------------------------------------

/// `gpu-market serve` as a child process on a free port, its output in a log file.
pub struct ServerProcess {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl ServerProcess {
    /// Starts `serve` in `dir` (no gpu-market.toml there unless the test put one) with built-in
    /// policies, on `database_url`, with the extra arguments and `GPU_MARKET_*` variables given; waits
    /// until `/health` answers.
    pub async fn start(
        dir: &std::path::Path,
        database_url: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().unwrap().port()
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let policies = dir.join("policies-empty");
        std::fs::create_dir_all(&policies).unwrap();
        let log = dir.join(format!("server-{port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_gpu-market"));
        command.current_dir(dir);
        for (name, _) in std::env::vars() {
            if name.starts_with("GPU_MARKET_") || name == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        command
            .args(args)
            .arg("serve")
            .arg("--bind")
            .arg(addr.to_string())
            .arg("--database-url")
            .arg(database_url)
            .arg("--policies")
            .arg(&policies)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::from(out))
            .stderr(std::process::Stdio::from(err))
            .kill_on_drop(true);
        let child = command.spawn().expect("the gpu-market binary starts");
        let mut server = Self { child, addr, log };
        server.wait_healthy().await;
        server
    }

    async fn wait_healthy(&mut self) {
        let client = reqwest::Client::new();
        let url = format!("http://{}/health", self.addr);
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited with {status}: {}", self.log_text());
            }
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "server not healthy within a minute: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) {
        let pid = self.child.id().expect("the server runs") as i32;
        // SAFETY: kill(2) on the pid of our own child process; no memory is involved.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal}) failed");
    }

    /// Waits for the process to exit; panics after `deadline`.
    pub async fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        match tokio::time::timeout(deadline, self.child.wait()).await {
            Ok(status) => status.expect("wait for the server"),
            Err(_) => panic!(
                "server did not exit within {deadline:?}: {}",
                self.log_text()
            ),
        }
    }
}

/// Waits until no booking is active more than 300 ms past its end (the sweepers caught up), failing
/// after `within`, then lets a last sweep settle.
pub async fn wait_until_swept(pool: &AnyPool, within: Duration) {
    let start = Instant::now();
    loop {
        let overdue: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM bookings WHERE status = 'active' AND end_at < $1",
        )
        .bind(chrono::Utc::now().timestamp_micros() - 300_000)
        .fetch_one(pool)
        .await
        .expect("count overdue bookings");
        if overdue == 0 {
            break;
        }
        assert!(
            start.elapsed() < within,
            "{overdue} bookings stayed active past their end"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Every booking row, for the tests that check invariants over the whole table.
pub async fn all_bookings(pool: &AnyPool) -> Vec<BookingRow> {
    let rows = sqlx::query(
        "SELECT id, order_id, gpu_id, client_id, status, duration_seconds, price_micro, total_micro, \
         refund_micro, charged_micro, start_at, end_at, ended_at FROM bookings",
    )
    .fetch_all(pool)
    .await
    .expect("read the bookings");
    rows.iter().map(BookingRow::from_row).collect()
}
