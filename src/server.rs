//! Wiring: configuration → store → policies → market → HTTP router and background tasks, and a clean
//! stop on SIGTERM / ctrl-c (in-flight requests drain, background tasks finish their current step).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::{Router, ServiceExt};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::cache::ResponseCache;
use crate::api::limits::WriteLimiter;
use crate::api::{self, ApiContext, ApiState, auth::Auth};
use crate::config::Config;
use crate::config::PolicyCacheConfig;
use crate::market::decision_log::{self, DecisionWriter, WriterCounters};
use crate::market::policy_admin::PolicyAdmin;
use crate::market::{Market, idempotency, price_refresh, sweeper};
use crate::metrics::Metrics;
use crate::policy::Policies;
use crate::policy::wasm::{ArtifactCache, PolicyRuntime};
use crate::store::Store;

/// A ready service: migrated database, policies loaded, router built. Nothing runs until
/// [`App::serve`] or [`App::spawn_background`].
pub struct App {
    context: ApiContext,
    /// Stops the policy directory watcher when the server stops.
    policy_watch: CancellationToken,
    /// Where the embedded default policies are served from when the configured directory does not
    /// exist; removed when the app is dropped.
    _embedded_policies: Option<tempfile::TempDir>,
    /// Writes the runtime's decisions into the decision log; finished last at shutdown.
    decision_writer: Option<DecisionWriter>,
}

impl App {
    /// The production assembly: policies from the WebAssembly runtime over `config.policies_dir`
    /// (built-in rules for any slot `policies.toml` does not configure).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let policy_watch = CancellationToken::new();
        let embedded = embedded_policies_for(&config.policies_dir)?;
        let policies_dir = embedded
            .as_ref()
            .map_or(config.policies_dir.as_path(), |dir| dir.path());
        let cache = open_policy_cache(&config.policy_cache);
        let runtime = PolicyRuntime::start_with_cache(policies_dir, cache, policy_watch.clone())
            .await
            .with_context(|| format!("cannot load policies from {}", policies_dir.display()))?;
        for status in runtime.statuses() {
            match &status.last_error {
                None => {
                    tracing::info!(slot = %status.slot, policy = %status.policy, "policy slot ready")
                }
                Some(error) => {
                    tracing::warn!(slot = %status.slot, policy = %status.policy, %error, "policy slot rejected its module; serving the fallback")
                }
            }
        }
        let policies: Arc<dyn Policies> = runtime.clone();
        let mut app = Self::assemble(config, policies, Some(runtime), policy_watch).await?;
        app._embedded_policies = embedded;
        Ok(app)
    }

    /// An app whose decisions come from `policies` (tests, embedders); no policy admin API.
    pub async fn build_with_policies(
        config: Config,
        policies: Arc<dyn Policies>,
    ) -> anyhow::Result<Self> {
        Self::assemble(config, policies, None, CancellationToken::new()).await
    }

    async fn assemble(
        config: Config,
        policies: Arc<dyn Policies>,
        runtime: Option<Arc<PolicyRuntime>>,
        policy_watch: CancellationToken,
    ) -> anyhow::Result<Self> {
        config.validate()?;
        let store = Store::connect(&config.database).await?;
        store.migrate().await?;
        let mut registry = Registry::default();
        let metrics = Arc::new(Metrics::new(&mut registry));
        if let Some(runtime) = &runtime {
            runtime.register_metrics(&mut registry);
        }
        let mut config = config;
        let plain = config.hash_plain_keys();
        if !plain.is_empty() {
            tracing::warn!(
                principals = ?plain,
                "API keys configured in plain text (hashed at start, never kept); store them as \
                 sha256:<hex> instead: `gpu-market keys add` writes new keys that way"
            );
        }
        let decision_writer = match &runtime {
            Some(runtime) if config.decision_log.enabled => {
                let counters = WriterCounters {
                    written: metrics.decision_log_written.clone(),
                    lost: metrics.decision_log_lost.clone(),
                };
                let (writer, sender) =
                    DecisionWriter::start(store.clone(), &config.decision_log, counters);
                runtime.log_decisions_to(sender);
                Some(writer)
            }
            _ => None,
        };
        let auth = Arc::new(Auth::from_config(&config));
        let limiter = Arc::new(WriteLimiter::new(&config.rate_limit));
        let config_ttl = config.cache_ttl_ms;
        let market = Market::new(store, policies, Arc::new(config), metrics);
        let cache = Arc::new(ResponseCache::new(Duration::from_millis(config_ttl)));
        Ok(Self {
            context: ApiContext::new(ApiState {
                cache,
                market,
                auth,
                registry: Arc::new(registry),
                policy_admin: PolicyAdmin::new(runtime),
                limiter,
                tasks: TaskTracker::new(),
            }),
            policy_watch,
            _embedded_policies: None,
            decision_writer,
        })
    }

    /// The API's routes under the service's own checks. `serve` also wraps them in the transport
    /// layers (`api::around_routes`: `nosniff`, request id, trace span, body limit); an embedder that
    /// serves this router itself should do the same.
    pub fn router(&self) -> Router {
        api::router(self.context.clone())
    }

    pub fn market(&self) -> &Market {
        &self.context.market
    }

    /// Starts the booking sweeper, the heartbeat monitor, the price refresher, the purge of expired
    /// idempotency keys and of idle rate-limit buckets.
    pub fn spawn_background(&self, shutdown: &CancellationToken) -> Vec<JoinHandle<()>> {
        let market = &self.context.market;
        let mut tasks = vec![
            tokio::spawn(sweeper::run_booking_sweeper(
                market.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(sweeper::run_heartbeat_monitor(
                market.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(price_refresh::run_refresher(
                market.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(idempotency::run_purger(market.clone(), shutdown.clone())),
            tokio::spawn(forget_idle_callers(
                self.context.limiter.clone(),
                shutdown.clone(),
            )),
        ];
        if self.decision_writer.is_some() {
            tasks.push(tokio::spawn(decision_log::run_retention(
                market.clone(),
                shutdown.clone(),
            )));
        }
        tasks
    }

    /// Serves on `listener` until `shutdown` is cancelled. Then it stops accepting at once, lets
    /// in-flight requests finish, stops the background tasks after their current step and closes the
    /// database pool, all within `server.shutdown_grace_ms`; what is not done by then is abandoned.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let grace = Duration::from_millis(self.context.config().server.shutdown_grace_ms);
        let tasks = self.spawn_background(&shutdown);
        let max_body = self.context.config().max_body_bytes;
        let service = api::around_routes(self.router(), max_body)
            .into_make_service_with_connect_info::<SocketAddr>();
        let server = axum::serve(listener, service)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future();
        tokio::pin!(server);
        let (result, deadline) = tokio::select! {
            result = &mut server => (result, Instant::now() + grace),
            () = shutdown.cancelled() => {
                let deadline = Instant::now() + grace;
                match tokio::time::timeout_at(deadline, &mut server).await {
                    Ok(result) => (result, deadline),
                    Err(_) => {
                        tracing::warn!(grace_ms = grace.as_millis() as u64, "in-flight requests did not finish within the shutdown grace; abandoning them");
                        (Ok(()), deadline)
                    }
                }
            }
        };
        shutdown.cancel();
        self.policy_watch.cancel();
        for task in tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                tracing::warn!("a background task did not stop within the shutdown grace");
                abort.abort();
            }
        }
        // Idempotent writes whose client or deadline gave up still finish and store their answer.
        self.context.tasks.close();
        if tokio::time::timeout_at(deadline, self.context.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("idempotent writes still running at the end of the shutdown grace");
        }
        // Every decision has been made by now: write what the log still queues.
        if let Some(writer) = self.decision_writer.take() {
            writer.finish(deadline).await;
        }
        if tokio::time::timeout_at(deadline, self.context.market.store.close())
            .await
            .is_err()
        {
            tracing::warn!("the database pool did not close within the shutdown grace");
        }
        result.context("HTTP server failed")
    }
}

/// The compile cache as configured, or None (turned off, or unusable: the service then compiles every
/// module at start, which is slower but as safe, so a cache problem does not stop it).
fn open_policy_cache(config: &PolicyCacheConfig) -> Option<ArtifactCache> {
    if config.max_mib == 0 {
        return None;
    }
    let dir = config.resolved_dir();
    match ArtifactCache::open(&dir, config.max_mib.saturating_mul(1 << 20)) {
        Ok(cache) => {
            tracing::info!(dir = %cache.dir().display(), max_mib = config.max_mib, "policy compile cache");
            Some(cache)
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), "policy compile cache unusable, every module is compiled at start: {e}");
            None
        }
    }
}

/// When `dir` does not exist, writes the default policies embedded in the binary into a private
/// temporary directory to serve from, and says so: an installed binary run outside the source tree
/// then serves what a fresh clone serves. Uploads through the admin API go there too and are lost at
/// exit; `gpu-market policy init DIR` writes the defaults out to keep and edit.
fn embedded_policies_for(dir: &std::path::Path) -> anyhow::Result<Option<tempfile::TempDir>> {
    if dir.exists() {
        return Ok(None);
    }
    let temporary = tempfile::Builder::new()
        .prefix("gpu-market-policies-")
        .tempdir()
        .context("cannot create a directory for the embedded default policies")?;
    crate::policy::defaults::write_to(temporary.path(), true)?;
    tracing::warn!(
        "policies directory {} does not exist: serving the default policies embedded in the binary \
         (write them out with `gpu-market policy init {}`; uploads are not kept across restarts)",
        dir.display(),
        dir.display()
    );
    Ok(Some(temporary))
}

/// Drops the rate-limit buckets of callers that have been idle, every minute.
async fn forget_idle_callers(limiter: Arc<WriteLimiter>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => limiter.forget_idle(),
        }
    }
}

/// A server running in the background, for tests and embedding.
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn shutdown(self) {
        self.shutdown.cancel();
        match self.handle.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "server stopped with an error"),
            Err(err) => tracing::warn!(error = %err, "server task failed"),
        }
    }
}

/// Builds the app and serves it on `config.bind` (port 0 picks a free port).
pub async fn spawn(config: Config) -> anyhow::Result<RunningServer> {
    let bind = config.bind;
    let app = App::build(config).await?;
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(app.serve(listener, shutdown.clone()));
    Ok(RunningServer {
        addr,
        shutdown,
        handle,
    })
}

/// `gpu-market serve`: runs until SIGTERM or ctrl-c.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let bind = config.bind;
    let local_mode = config.local_mode();
    let open = config.allow_open_access;
    let app = App::build(config).await?;
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, database = app.market().store.display_url(), "gpu-market listening on http://{addr}");
    if local_mode {
        if open {
            tracing::warn!(
                "NO API KEYS CONFIGURED and allow_open_access is set: every caller has every role"
            );
        } else {
            tracing::warn!(
                "LOCAL MODE: no API keys configured; only loopback callers are served, each as principal `local` with all roles"
            );
        }
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    app.serve(listener, shutdown).await?;
    tracing::info!("gpu-market stopped");
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested; draining in-flight requests");
    shutdown.cancel();
}
