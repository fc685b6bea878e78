//! One typed configuration, read once at start. Layers, each over the one before (figment merges them):
//! the defaults, the TOML file, `GPU_MARKET_*` environment variables, then command-line flags. Every
//! key can come from any layer; unknown keys are refused wherever they come from, naming the key.
//! Everything is validated here so the rest of the service can trust it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use keys::{KEY_HASH_PREFIX, KeyHash};
pub use load::{ENV_PREFIX, Overrides};

pub mod keys;
mod load;

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "gpu-market.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A key unknown or of the wrong type, with where it came from (file or environment variable).
    #[error("{0}")]
    Load(String),
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub bind: SocketAddr,
    /// Directory holding `policies.toml` and the deployed `.wasm` modules.
    pub policies_dir: PathBuf,
    /// Where the code this host compiles from policy modules is kept across restarts.
    pub policy_cache: PolicyCacheConfig,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Serve with no API keys on a non-loopback address (everyone gets every role). Off by default.
    pub allow_open_access: bool,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` / `X-Real-IP` headers are believed: the
    /// caller is then the address they forward. In local mode a request carrying those headers from any
    /// other peer is refused (403). Empty by default.
    pub trusted_proxies: Vec<IpAddr>,
    /// `tracing` filter used when `RUST_LOG` is not set.
    pub log: String,
    /// How long a catalogue response (list, details) may be served from memory; this replica's own
    /// writes invalidate it at once, so this bounds the staleness of other replicas' writes. 0 = off.
    pub cache_ttl_ms: u64,
    pub database: DatabaseConfig,
    pub booking: BookingConfig,
    pub heartbeat: HeartbeatConfig,
    pub pricing: PricingConfig,
    pub reviews: ReviewConfig,
    pub server: ServerConfig,
    pub rate_limit: RateLimitConfig,
    pub decision_log: DecisionLogConfig,
    /// API keys. None configured = local mode (loopback callers only, all roles).
    pub keys: Vec<ApiKeyConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 18000)),
            policies_dir: PathBuf::from("policies"),
            policy_cache: PolicyCacheConfig::default(),
            max_body_bytes: 64 * 1024,
            allow_open_access: false,
            trusted_proxies: Vec::new(),
            log: "info".to_owned(),
            cache_ttl_ms: 500,
            database: DatabaseConfig::default(),
            booking: BookingConfig::default(),
            heartbeat: HeartbeatConfig::default(),
            pricing: PricingConfig::default(),
            reviews: ReviewConfig::default(),
            server: ServerConfig::default(),
            rate_limit: RateLimitConfig::default(),
            decision_log: DecisionLogConfig::default(),
            keys: Vec::new(),
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path?mode=rwc` (default, embedded) or `postgres://user:password@host/db`. A secret:
    /// it may hold the password.
    pub url: Secret,
    /// The pool's size; SQLite's readers are capped at two per core besides (see `store`).
    pub max_connections: u32,
    pub min_connections: u32,
    /// How long a request waits for a pooled connection before failing.
    pub acquire_timeout_ms: u64,
    /// How long the service retries reaching the database at start before giving up.
    pub connect_timeout_ms: u64,
    /// SQLite: how long a writer waits for the file lock.
    pub busy_timeout_ms: u64,
    /// SQLite: `full` (default) syncs every commit to disk, so nothing acknowledged is lost even on power
    /// loss; `normal` survives a crash of the service but may lose the last commits on power loss.
    pub sqlite_synchronous: SqliteSynchronous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    #[default]
    Full,
    Normal,
}

impl SqliteSynchronous {
    pub fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("sqlite://data/gpu-market.db?mode=rwc"),
            max_connections: 16,
            min_connections: 1,
            acquire_timeout_ms: 5_000,
            connect_timeout_ms: 5_000,
            busy_timeout_ms: 5_000,
            sqlite_synchronous: SqliteSynchronous::Full,
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(self.url.expose()))
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("busy_timeout_ms", &self.busy_timeout_ms)
            .field("sqlite_synchronous", &self.sqlite_synchronous)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BookingConfig {
    /// How often the expiry sweeper looks at active bookings.
    pub sweep_interval_ms: u64,
    /// Upper bound on what the timeout policy may add to one booking (extensions + grace).
    pub max_extensions: u32,
}

impl Default for BookingConfig {
    fn default() -> Self {
        Self {
            sweep_interval_ms: 1_000,
            max_extensions: 3,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeartbeatConfig {
    /// A GPU that sent heartbeats and then stays silent this long turns `offline`.
    pub timeout_seconds: u64,
    pub check_interval_ms: u64,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            timeout_seconds: 300,
            check_interval_ms: 5_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PricingConfig {
    /// How often current prices of the whole catalogue are recomputed (they also are on every market event).
    pub refresh_interval_ms: u64,
    /// Spacing of the per-model price history samples.
    pub history_interval_seconds: u64,
    /// How many history points the pricing endpoint returns.
    pub history_points: u32,
}

impl Default for PricingConfig {
    fn default() -> Self {
        Self {
            refresh_interval_ms: 30_000,
            history_interval_seconds: 300,
            history_points: 48,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewConfig {
    pub max_comment_chars: usize,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        Self {
            max_comment_chars: 2_000,
        }
    }
}

/// The decision log: every live policy decision, written in batches off the request path and kept
/// within both retention bounds (the oldest go first).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionLogConfig {
    /// Record decisions at all (shadow and canary reports, replay and fixtures read the log).
    pub enabled: bool,
    /// Entries older than this are deleted.
    pub max_age_hours: u64,
    /// At most this many entries are kept.
    pub max_rows: u64,
    /// Entries written per transaction, at most.
    pub batch_size: usize,
    /// How long the writer waits to fill a batch once it has one entry. Longer windows write fewer,
    /// larger transactions (the log's index pages are rewritten once per transaction, not per
    /// entry); entries show in the admin API this much later, and a crash loses at most this window.
    pub flush_ms: u64,
    /// How long a batch the database refuses is retried before each of its entries gets one try
    /// alone; entries that still fail are lost (logged and counted in
    /// `gpu_market_decision_log_lost_entries_total`). Deciders wait while the queue is full, so this also
    /// bounds how long a log that cannot be written holds decisions up.
    pub retry_ms: u64,
    /// How often retention runs.
    pub prune_interval_ms: u64,
}

impl Default for DecisionLogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_age_hours: 7 * 24,
            max_rows: 1_000_000,
            batch_size: 4_096,
            flush_ms: 250,
            retry_ms: 30_000,
            prune_interval_ms: 60_000,
        }
    }
}

/// How the HTTP server protects itself: request deadline, concurrency, shutdown, idempotency.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// A request that has not been answered after this long gets 503 (its write, if any, still
    /// completes when it carried an `Idempotency-Key`). 0 = no deadline.
    pub request_timeout_ms: u64,
    /// Requests served at once; beyond this the server answers 503 at once instead of queueing.
    pub max_concurrent_requests: usize,
    /// On SIGTERM / ctrl-c: how long in-flight requests and background tasks may take to finish
    /// before the process exits anyway.
    pub shutdown_grace_ms: u64,
    /// How long an `Idempotency-Key` and its stored answer are kept.
    pub idempotency_ttl_seconds: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            request_timeout_ms: 30_000,
            max_concurrent_requests: 1_024,
            shutdown_grace_ms: 10_000,
            idempotency_ttl_seconds: 24 * 3600,
        }
    }
}

/// The compile cache of policy modules: a JavaScript or Python module takes seconds to compile, its
/// cached code milliseconds to load. Only code this host compiled itself is ever loaded (each file is
/// authenticated with a key the host generates into the directory, mode 0600).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyCacheConfig {
    /// Default: `$XDG_CACHE_HOME/gpu-market/policy-cache`, else `~/.cache/gpu-market/policy-cache`,
    /// else `data/policy-cache`. Never inside `policies_dir`.
    pub dir: Option<PathBuf>,
    /// Bound on the cached code's total size; the least recently used goes first (a JavaScript
    /// module's code is about 40 MiB, a Rust one's under 1 MiB). 0 turns the cache off.
    pub max_mib: u64,
}

impl Default for PolicyCacheConfig {
    fn default() -> Self {
        Self {
            dir: None,
            max_mib: 512,
        }
    }
}

impl PolicyCacheConfig {
    /// The directory to use, resolving the default from the environment.
    pub fn resolved_dir(&self) -> PathBuf {
        if let Some(dir) = &self.dir {
            return dir.clone();
        }
        let nonempty = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        let base = nonempty("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| nonempty("HOME").map(|home| PathBuf::from(home).join(".cache")));
        match base {
            Some(base) => base.join("gpu-market").join("policy-cache"),
            None => PathBuf::from("data").join("policy-cache"),
        }
    }
}

/// Token buckets on writes (book, release, register, review, bid, admin actions), one per API key's
/// principal, or per address for callers without a valid key. Local mode (no keys, loopback only)
/// has one user, the machine's, and is not limited.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sustained writes per second per caller; 0 turns the limit off.
    pub writes_per_second: f64,
    /// Writes a caller may make at once after being idle (the bucket's size).
    pub write_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            writes_per_second: 20.0,
            write_burst: 60,
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub key: Secret,
    /// Who the key belongs to: becomes `client_id` / `miner_id`.
    pub principal: String,
    pub roles: Vec<Role>,
}

impl fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyConfig")
            .field("principal", &self.principal)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// A value that must never reach a log line (API keys, the database URL): secrecy's `SecretString`,
/// redacted when printed and wiped from memory when dropped; [`Secret::expose`] is the one way out.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Client,
    Miner,
    Admin,
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_owned(),
            })
        };
        let url = self.database.url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return invalid(
                "database.url",
                "must start with sqlite:, postgres:// or postgresql://",
            );
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections", "must be at least 1");
        }
        if self.database.min_connections > self.database.max_connections {
            return invalid(
                "database.min_connections",
                "must not exceed database.max_connections",
            );
        }
        if self.max_body_bytes < 1024 {
            return invalid("max_body_bytes", "must be at least 1024");
        }
        if self.booking.sweep_interval_ms == 0 {
            return invalid("booking.sweep_interval_ms", "must be positive");
        }
        if self.heartbeat.timeout_seconds == 0 || self.heartbeat.check_interval_ms == 0 {
            return invalid(
                "heartbeat",
                "timeout_seconds and check_interval_ms must be positive",
            );
        }
        if self.pricing.refresh_interval_ms == 0 || self.pricing.history_interval_seconds == 0 {
            return invalid(
                "pricing",
                "refresh_interval_ms and history_interval_seconds must be positive",
            );
        }
        let log = &self.decision_log;
        if log.max_age_hours == 0 || log.max_rows == 0 {
            return invalid(
                "decision_log",
                "max_age_hours and max_rows must be positive",
            );
        }
        if log.batch_size == 0 || log.batch_size > 10_000 || log.prune_interval_ms == 0 {
            return invalid(
                "decision_log",
                "batch_size must be within 1-10000 and prune_interval_ms positive",
            );
        }
        if self.pricing.history_points == 0 || self.pricing.history_points > 10_000 {
            return invalid("pricing.history_points", "must be between 1 and 10000");
        }
        if self.server.max_concurrent_requests == 0 {
            return invalid("server.max_concurrent_requests", "must be at least 1");
        }
        if self.server.idempotency_ttl_seconds == 0 {
            return invalid("server.idempotency_ttl_seconds", "must be positive");
        }
        let rate = self.rate_limit.writes_per_second;
        if !rate.is_finite() || rate < 0.0 {
            return invalid(
                "rate_limit.writes_per_second",
                "must be 0 (off) or positive",
            );
        }
        if rate > 0.0 && self.rate_limit.write_burst == 0 {
            return invalid("rate_limit.write_burst", "must be at least 1");
        }
        let mut seen = std::collections::HashSet::new();
        for key in &self.keys {
            if key.key.expose().is_empty() {
                return invalid("keys.key", "an API key must not be empty");
            }
            let hash = match KeyHash::from_config(key.key.expose()) {
                Ok(hash) => hash,
                Err(message) => return invalid("keys.key", &message),
            };
            if key.principal.trim().is_empty() {
                return invalid("keys.principal", "must not be empty");
            }
            if key.roles.is_empty() {
                return invalid("keys.roles", "a key needs at least one role");
            }
            if !seen.insert(hash) {
                return invalid("keys.key", "the same key is configured twice");
            }
        }
        if self.keys.is_empty() && !self.bind.ip().is_loopback() && !self.allow_open_access {
            return invalid(
                "bind",
                "no API keys are configured, so the server only serves loopback callers; bind to a \
                 loopback address, configure [[keys]], or set allow_open_access = true",
            );
        }
        Ok(())
    }

    /// Local mode: no keys, every loopback caller is principal `local` with all roles.
    pub fn local_mode(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The URL with any password replaced, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_bind_without_keys_needs_an_explicit_opt_in() {
        let mut config = Config::from_toml("bind = \"0.0.0.0:18000\"").unwrap();
        assert!(config.validate().is_err());
        config.allow_open_access = true;
        assert!(config.validate().is_ok());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://bob:hunter2@db:5432/x"),
            "postgres://bob:***@db:5432/x"
        );
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let key = ApiKeyConfig {
            key: Secret::new("s3cret"),
            principal: "a".into(),
            roles: vec![Role::Admin],
        };
        assert!(!format!("{key:?}").contains("s3cret"));
        let config =
            Config::from_toml("[database]\nurl = \"postgres://bob:hunter2@db/x\"").unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("postgres://bob:***@db/x"), "{printed}");
    }
}

#[cfg(test)]
mod example_file {
    #[test]
    fn the_shipped_example_parses_and_validates() {
        let text = include_str!("../gpu-market.example.toml");
        let config = super::Config::from_toml(text).expect("example parses");
        config.validate().expect("example validates");
        let defaults = super::Config::default();
        assert_eq!(config.bind, defaults.bind);
        assert_eq!(config.database.url.expose(), defaults.database.url.expose());
    }
}
