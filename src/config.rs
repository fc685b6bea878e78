//! One typed configuration, read once at start. Layers, each over the one before (figment merges them):
//! the defaults, the TOML file, `GPU_MARKET_*` environment variables, then command-line flags. Every
//! key can come from any layer; unknown keys are refused wherever they come from, naming the key.
//! Everything is validated here so the rest of the service can trust it.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "gpu-market.toml";

/// Environment variables with this prefix are configuration: `GPU_MARKET_LOG` is `log`, and `__`
/// separates nested keys: `GPU_MARKET_DATABASE__MAX_CONNECTIONS` is `database.max_connections`.
pub const ENV_PREFIX: &str = "GPU_MARKET_";
const ENV_NESTING: &str = "__";
/// Prefixed variables that are not configuration: the test harness's and the load benchmark's.
const ENV_NOT_CONFIG: [&str; 2] = ["TEST_", "BENCH_"];
/// Names from before every key could come from the environment, still honoured.
const ENV_ALIASES: [(&str, &str); 1] = [("DATABASE_URL", "DATABASE__URL")];
/// The name of the environment layer, by which its errors are told apart.
const ENV_LAYER: &str = "environment variable";

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
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Serve with no API keys on a non-loopback address (everyone gets every role). Off by default.
    pub allow_open_access: bool,
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
    /// API keys. None configured = local mode (loopback callers only, all roles).
    pub keys: Vec<ApiKeyConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 18000)),
            policies_dir: PathBuf::from("policies"),
            max_body_bytes: 64 * 1024,
            allow_open_access: false,
            log: "info".to_owned(),
            cache_ttl_ms: 500,
            database: DatabaseConfig::default(),
            booking: BookingConfig::default(),
            heartbeat: HeartbeatConfig::default(),
            pricing: PricingConfig::default(),
            reviews: ReviewConfig::default(),
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

/// Values given on the command line; they win over the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub bind: Option<SocketAddr>,
    pub database_url: Option<Secret>,
    pub policies_dir: Option<PathBuf>,
}

impl Overrides {
    /// The flags as the last layer: only those given.
    fn layer(&self, figment: Figment) -> Figment {
        let mut figment = figment;
        if let Some(bind) = self.bind {
            figment = figment.merge(Serialized::default("bind", bind));
        }
        if let Some(url) = &self.database_url {
            figment = figment.merge(Serialized::default("database.url", url.expose()));
        }
        if let Some(dir) = &self.policies_dir {
            figment = figment.merge(Serialized::default("policies_dir", dir));
        }
        figment
    }
}

impl Config {
    /// Reads `path` (or `gpu-market.toml` when present), then the process environment and
    /// `overrides`, and validates the result.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let vars = std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        });
        Self::load_from(path, vars, overrides)
    }

    /// [`Config::load`] with the environment given as `(name, value)` pairs.
    pub fn load_from(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let file = match path {
            Some(path) => {
                // A file named on the command line must exist; figment would skip a missing one.
                std::fs::metadata(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Some(path)
            }
            None => Some(Path::new(DEFAULT_CONFIG_FILE)).filter(|path| path.exists()),
        };
        // The defaults are the structs' `Default`s, filled in by `#[serde(default)]`.
        let mut figment = Figment::new();
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        let env = EnvLayer::new(vars);
        figment = overrides.layer(figment.merge(env.clone()));
        let config: Self = figment.extract().map_err(|err| load_error(err, &env))?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML document over the defaults (no environment, not validated).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Figment::from(Toml::string(text))
            .extract()
            .map_err(|err| load_error(err, &EnvLayer::default()))
    }

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
        if self.pricing.history_points == 0 || self.pricing.history_points > 10_000 {
            return invalid("pricing.history_points", "must be between 1 and 10000");
        }
        let mut seen = std::collections::HashSet::new();
        for key in &self.keys {
            if key.key.expose().is_empty() {
                return invalid("keys.key", "an API key must not be empty");
            }
            if key.principal.trim().is_empty() {
                return invalid("keys.principal", "must not be empty");
            }
            if key.roles.is_empty() {
                return invalid("keys.roles", "a key needs at least one role");
            }
            if !seen.insert(key.key.expose()) {
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

/// The `GPU_MARKET_*` variables as a figment layer. Values are read the way figment reads the
/// environment (numbers, booleans, `[...]` arrays and `{...}` dicts, else strings), so a list of API
/// keys can come from here too: `GPU_MARKET_KEYS='[{key="k", principal="p", roles=["admin"]}]'`.
/// figment's own `Env` reads only the process environment; this one takes the variables given, so
/// tests need not change the process's, and its errors name the variable.
#[derive(Clone, Default)]
struct EnvLayer {
    vars: Vec<EnvVar>,
}

#[derive(Clone)]
struct EnvVar {
    /// As set: `GPU_MARKET_DATABASE__MAX_CONNECTIONS`.
    name: String,
    /// The key path it sets: `database.max_connections`.
    key: String,
    value: String,
}

impl EnvLayer {
    fn new(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let vars = vars
            .into_iter()
            .filter_map(|(name, value)| {
                let rest = name.strip_prefix(ENV_PREFIX)?;
                if ENV_NOT_CONFIG.iter().any(|other| rest.starts_with(other)) {
                    return None;
                }
                let rest = ENV_ALIASES
                    .iter()
                    .find(|(old, _)| *old == rest)
                    .map_or(rest, |(_, new)| new);
                let key = rest.to_ascii_lowercase().replace(ENV_NESTING, ".");
                Some(EnvVar { name, key, value })
            })
            .collect();
        Self { vars }
    }

    /// The variable that set the key at `path` (or a key below it), as the user spelled it.
    fn name_of(&self, path: &[String]) -> String {
        let key = path.join(".");
        self.vars
            .iter()
            .find(|var| var.key == key || var.key.starts_with(&format!("{key}.")))
            .map_or_else(|| env_name(path), |var| var.name.clone())
    }
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_LAYER).interpolater(|_: &Profile, path: &[&str]| env_name(path))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for EnvVar { key, value, .. } in &self.vars {
            let value: Value = value.parse().unwrap_or_else(|never| match never {});
            let path: Vec<&str> = key.split('.').collect();
            insert(&mut dict, &path, value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Puts `value` at `path` in `dict`, creating the tables on the way.
fn insert(dict: &mut Dict, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry((*first).to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

/// The variable that sets the key at `path`: `GPU_MARKET_DATABASE__MAX_CONNECTIONS`.
fn env_name(path: &[impl AsRef<str>]) -> String {
    let keys: Vec<String> = path
        .iter()
        .map(|key| key.as_ref().to_ascii_uppercase())
        .collect();
    format!("{ENV_PREFIX}{}", keys.join(ENV_NESTING))
}

/// figment's errors, each said with the key and where it came from: the file or the variable.
fn load_error(errors: figment::Error, env: &EnvLayer) -> ConfigError {
    let messages: Vec<String> = errors
        .into_iter()
        .map(|error| {
            let key = error.path.join(".");
            let origin = match &error.metadata {
                Some(meta) if meta.name == ENV_LAYER => {
                    format!("environment variable {}", env.name_of(&error.path))
                }
                Some(meta) => match &meta.source {
                    Some(Source::File(path)) => format!("config file {}", path.display()),
                    _ => meta.name.to_string(),
                },
                None => "configuration".to_owned(),
            };
            if key.is_empty() {
                format!("{origin}: {}", error.kind)
            } else {
                format!("{origin}: key `{key}`: {}", error.kind)
            }
        })
        .collect();
    ConfigError::Load(messages.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn load_env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load_from(None, vars(pairs), &Overrides::default())
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = Config::from_toml("bnid = \"127.0.0.1:1\"").unwrap_err();
        assert!(err.to_string().contains("bnid"), "{err}");
        let err = Config::from_toml("[database]\nurll = \"x\"").unwrap_err();
        assert!(err.to_string().contains("database.urll"), "{err}");
    }

    #[test]
    fn errors_in_the_file_name_the_file_and_the_key() {
        let toml = file("[database]\nmax_connections = \"many\"");
        let err = Config::load_from(Some(toml.path()), vars(&[]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("database.max_connections"), "{err}");
        assert!(err.contains(&toml.path().display().to_string()), "{err}");
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let err = Config::load_from(
            Some(Path::new("/nonexistent/gpu-market.toml")),
            vars(&[]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = Config::from_toml("[database]\nmax_connections = \"many\"").unwrap_err();
        assert!(err.to_string().contains("max_connections"), "{err}");
        let config = Config::from_toml("[database]\nurl = \"mysql://x\"").unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("database.url"), "{err}");
    }

    #[test]
    fn the_environment_overrides_the_file_and_the_flags_override_both() {
        let toml = file("bind = \"127.0.0.1:1\"\nlog = \"debug\"\n[database]\nmax_connections = 4");
        let env = vars(&[
            ("GPU_MARKET_BIND", "127.0.0.1:2"),
            ("GPU_MARKET_DATABASE__MAX_CONNECTIONS", "8"),
        ]);
        let config =
            Config::load_from(Some(toml.path()), env.clone(), &Overrides::default()).unwrap();
        assert_eq!(config.bind.port(), 2);
        assert_eq!(config.database.max_connections, 8);
        assert_eq!(
            config.log, "debug",
            "what the environment leaves, the file keeps"
        );

        let flags = Overrides {
            bind: Some("127.0.0.1:3".parse().unwrap()),
            database_url: Some(Secret::new("postgres://u:p@h/db")),
            policies_dir: Some(PathBuf::from("elsewhere")),
        };
        let config = Config::load_from(Some(toml.path()), env, &flags).unwrap();
        assert_eq!(config.bind.port(), 3);
        assert_eq!(config.database.url.expose(), "postgres://u:p@h/db");
        assert_eq!(config.policies_dir, PathBuf::from("elsewhere"));
        assert_eq!(config.database.max_connections, 8);
    }

    #[test]
    fn every_key_can_come_from_the_environment() {
        let config = load_env(&[
            ("GPU_MARKET_MAX_BODY_BYTES", "4096"),
            ("GPU_MARKET_ALLOW_OPEN_ACCESS", "true"),
            ("GPU_MARKET_CACHE_TTL_MS", "0"),
            ("GPU_MARKET_DATABASE__SQLITE_SYNCHRONOUS", "normal"),
            ("GPU_MARKET_BOOKING__MAX_EXTENSIONS", "5"),
            ("GPU_MARKET_HEARTBEAT__TIMEOUT_SECONDS", "60"),
            ("GPU_MARKET_PRICING__HISTORY_POINTS", "12"),
            ("GPU_MARKET_REVIEWS__MAX_COMMENT_CHARS", "100"),
            (
                "GPU_MARKET_KEYS",
                r#"[{key="k-1", principal="ops", roles=["admin", "miner"]}]"#,
            ),
        ])
        .unwrap();
        assert_eq!(config.max_body_bytes, 4096);
        assert!(config.allow_open_access);
        assert_eq!(config.cache_ttl_ms, 0);
        assert_eq!(
            config.database.sqlite_synchronous,
            SqliteSynchronous::Normal
        );
        assert_eq!(config.booking.max_extensions, 5);
        assert_eq!(config.heartbeat.timeout_seconds, 60);
        assert_eq!(config.pricing.history_points, 12);
        assert_eq!(config.reviews.max_comment_chars, 100);
        assert_eq!(config.keys.len(), 1);
        assert_eq!(config.keys[0].key.expose(), "k-1");
        assert_eq!(config.keys[0].roles, [Role::Admin, Role::Miner]);
    }

    #[test]
    fn the_older_variable_names_still_work() {
        let config = load_env(&[
            ("GPU_MARKET_DATABASE_URL", "postgres://u@h/db"),
            ("GPU_MARKET_BIND", "127.0.0.1:2"),
            ("GPU_MARKET_POLICIES_DIR", "/srv/policies"),
            ("GPU_MARKET_MAX_BODY_BYTES", "2048"),
            ("GPU_MARKET_LOG", "warn,gpu_market=debug"),
        ])
        .unwrap();
        assert_eq!(config.database.url.expose(), "postgres://u@h/db");
        assert_eq!(config.bind.port(), 2);
        assert_eq!(config.policies_dir, PathBuf::from("/srv/policies"));
        assert_eq!(config.max_body_bytes, 2048);
        assert_eq!(config.log, "warn,gpu_market=debug");
    }

    #[test]
    fn urls_from_the_environment_stay_text() {
        for url in [
            "postgres://u:p,w=1@[::1]:5432/db?sslmode=disable",
            "postgres://u:{secret}@h/db",
            "sqlite://data/x.db?mode=rwc",
        ] {
            let config = load_env(&[("GPU_MARKET_DATABASE__URL", url)]).unwrap();
            assert_eq!(config.database.url.expose(), url);
        }
    }

    #[test]
    fn unknown_variables_are_refused_by_name() {
        let err = load_env(&[("GPU_MARKET_DATABSE__URL", "sqlite::memory:")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("GPU_MARKET_DATABSE__URL"), "{err}");
        let err = load_env(&[("GPU_MARKET_DATABASE__MAX_CONECTIONS", "3")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("GPU_MARKET_DATABASE__MAX_CONECTIONS"), "{err}");
        let err = load_env(&[("GPU_MARKET_PRICING__HISTORY_POINTS", "many")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("GPU_MARKET_PRICING__HISTORY_POINTS"), "{err}");
    }

    #[test]
    fn variables_that_are_not_configuration_are_ignored() {
        let config = load_env(&[
            (
                "GPU_MARKET_TEST_POSTGRES_URL",
                "postgres://postgres@127.0.0.1/test",
            ),
            (
                "GPU_MARKET_BENCH_POSTGRES_URL",
                "postgres://postgres@127.0.0.1/bench",
            ),
            ("OTHER_DATABASE__URL", "postgres://x"),
        ])
        .unwrap();
        assert_eq!(
            config.database.url.expose(),
            Config::default().database.url.expose()
        );
    }

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
            load_env(&[("GPU_MARKET_DATABASE_URL", "postgres://bob:hunter2@db/x")]).unwrap();
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
