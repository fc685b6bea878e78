//! Reading the configuration in layers, each over the one before (figment merges them): the defaults
//! (the structs' `Default`s, filled in by `#[serde(default)]`), the TOML file, `GPU_MARKET_*`
//! environment variables, then command-line flags. Errors name the key and where it came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};

use super::{Config, ConfigError, DEFAULT_CONFIG_FILE, Secret};

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
    use crate::config::{Role, SqliteSynchronous};

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
            ("GPU_MARKET_SERVER__SHUTDOWN_GRACE_MS", "2500"),
            ("GPU_MARKET_SERVER__IDEMPOTENCY_TTL_SECONDS", "60"),
            ("GPU_MARKET_RATE_LIMIT__WRITES_PER_SECOND", "0.5"),
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
        assert_eq!(config.server.shutdown_grace_ms, 2500);
        assert_eq!(config.server.idempotency_ttl_seconds, 60);
        assert!((config.rate_limit.writes_per_second - 0.5).abs() < 1e-9);
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
}
