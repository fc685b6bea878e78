//! The `gpu-market` command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use gpu_market::config::{Config, DEFAULT_CONFIG_FILE, Overrides, Role, Secret};
use gpu_market::store::Store;
use tracing_subscriber::EnvFilter;

// mimalloc instead of glibc's malloc, whose arenas were about 12 % of the book+release cycle's CPU
// samples: the cycle ran 1.06-1.07x and reads by id 1.19-1.22x as fast (bench/load.sh, alternated).
// Freed large blocks go back to the system by themselves; glibc needed a fixed mmap threshold.
// `no_thp`: transparent huge pages were another 1.07x on the cycle, but backed the eagerly committed
// arena with 2 MiB pages, so the idle server held 64-68 MB instead of 36.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "gpu-market", version, about = "GPU rental marketplace backend")]
struct Cli {
    /// Config file (TOML). Default: gpu-market.toml when it exists.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Database URL: sqlite://PATH?mode=rwc or postgres://USER@HOST/DB.
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate the database and serve the marketplace API.
    Serve {
        /// Address to listen on (default 127.0.0.1:18000).
        #[arg(long)]
        bind: Option<SocketAddr>,
        /// Directory of policies.toml and the deployed .wasm modules.
        #[arg(long)]
        policies: Option<PathBuf>,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Check or try out a WebAssembly policy module without a server.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage API keys (stored in the config as SHA-256 hashes).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Backtest pricing policies on a fleet and a demand trace (`--config` names a policies.toml).
    Simulate(gpu_market::sim::cli::Args),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a module exactly as the hot reload does and show the cost of each sample input.
    Check {
        file: PathBuf,
        /// pricing, booking-timeout or review-moderation.
        #[arg(long)]
        slot: String,
        /// Directory whose policies.toml gives the slot's limits, config and samples.
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
    },
    /// Run one decision and print the output.
    Test {
        file: PathBuf,
        #[arg(long)]
        slot: String,
        /// The slot's request as JSON (its WIT record, snake_case fields).
        #[arg(long)]
        input: String,
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
    },
    /// Run a candidate module over the decision log's inputs (without touching live state) and print
    /// how its answers compare with the logged ones, as the shadow report does. Deterministic.
    Replay {
        /// pricing, booking-timeout or review-moderation.
        #[arg(long)]
        slot: String,
        /// The candidate module.
        #[arg(long)]
        module: PathBuf,
        /// Logged decisions from this time on (RFC 3339 or unix seconds; default: all kept).
        #[arg(long)]
        since: Option<String>,
        /// At most this many decisions, oldest first.
        #[arg(long, default_value_t = 10_000)]
        limit: u32,
        /// Directory whose policies.toml gives the slot's limits, config, guardrails and samples.
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
    },
    /// Print logged inputs as `[[SLOT.samples]]` entries for policies.toml, so that real cases
    /// become load-time checks.
    Fixtures {
        #[arg(long)]
        slot: String,
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Make an ed25519 key pair for signing modules: DIR/NAME.key (private, mode 0600) and
    /// DIR/NAME.pub (the line to list in policies.toml's [signing] trusted_keys).
    Keygen {
        /// Directory to write the key files into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Base name of the key files.
        #[arg(long, default_value = "policy-signing")]
        name: String,
    },
    /// Sign a module with a private key: writes FILE.sig beside it.
    Sign {
        file: PathBuf,
        /// The private key file (`policy keygen`'s NAME.key, or any ed25519 PKCS#8 PEM key).
        #[arg(long)]
        key: PathBuf,
    },
    /// Write the default policies embedded in the binary (policies.toml and its modules) into DIR.
    Init {
        dir: PathBuf,
        /// Overwrite files that already exist.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a new random key, print it once, and write its hash into the config file (`--config`,
    /// default gpu-market.toml; created when missing, the rest of the file is kept as it is).
    Add {
        /// client, miner or admin; repeat for several roles.
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
        /// Who the key belongs to (becomes client_id / miner_id).
        #[arg(long)]
        principal: String,
    },
    /// Print the `sha256:...` form of a key read from standard input, to replace a plain key in
    /// the config by its hash.
    Hash,
}

fn parse_role(text: &str) -> Result<Role, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "client" => Ok(Role::Client),
        "miner" => Ok(Role::Miner),
        "admin" => Ok(Role::Admin),
        other => Err(format!("unknown role {other:?}: client, miner or admin")),
    }
}

/// `gpu-market keys ...`: touches only the config file.
fn run_keys_command(command: KeysCommand, config: Option<&Path>) -> ExitCode {
    use gpu_market::config::KeyHash;
    use gpu_market::config::keys::{add_key_to_file, generate_key};
    let result = match command {
        KeysCommand::Add { roles, principal } => {
            let path = config.unwrap_or(Path::new(DEFAULT_CONFIG_FILE));
            if principal.trim().is_empty() {
                Err("--principal must not be empty".to_owned())
            } else {
                generate_key().and_then(|key| {
                    add_key_to_file(path, &KeyHash::of_key(&key), principal.trim(), &roles)?;
                    eprintln!(
                        "gpu-market: added a key for {} to {}; it is shown once, store it now:",
                        principal.trim(),
                        path.display()
                    );
                    println!("{key}");
                    Ok(())
                })
            }
        }
        KeysCommand::Hash => {
            let mut key = String::new();
            std::io::stdin()
                .read_line(&mut key)
                .map_err(|err| format!("cannot read the key: {err}"))
                .and_then(|_| {
                    let key = key.trim_end_matches(['\r', '\n']);
                    if key.is_empty() {
                        return Err("no key on standard input".to_owned());
                    }
                    println!("{}", KeyHash::of_key(key));
                    Ok(())
                })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gpu-market: {err}");
            ExitCode::from(2)
        }
    }
}

impl PolicyCommand {
    /// Replay and fixtures read the decision log; the others need no database.
    fn reads_the_log(&self) -> bool {
        matches!(self, Self::Replay { .. } | Self::Fixtures { .. })
    }
}

/// `gpu-market policy replay|fixtures`: reads the decision log of the configured database.
async fn run_log_command(command: PolicyCommand, config: &Config) -> anyhow::Result<()> {
    use gpu_market::market::decision_log::parse_instant;
    use gpu_market::market::replay;
    use gpu_market::policy::wasm::Slot;
    let since = |text: Option<String>| -> anyhow::Result<gpu_market::domain::Timestamp> {
        Ok(match text {
            Some(text) => parse_instant("--since", &text)?,
            None => gpu_market::domain::Timestamp::default(),
        })
    };
    let store = Store::connect(&config.database).await?;
    store.migrate().await?;
    let result = match command {
        PolicyCommand::Replay {
            slot,
            module,
            since: from,
            limit,
            policies,
        } => {
            let slot = slot.parse::<Slot>()?;
            let dir = policies.exists().then_some(policies.as_path());
            let report = replay::replay(&store, slot, &module, dir, since(from)?, limit).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        PolicyCommand::Fixtures {
            slot,
            since: from,
            limit,
        } => {
            let slot = slot.parse::<Slot>()?;
            print!(
                "{}",
                replay::fixtures(&store, slot, since(from)?, limit).await?
            );
            Ok(())
        }
        _ => Ok(()),
    };
    store.close().await;
    result
}

/// `gpu-market policy ...`: no database, no server; exit 1 when the module would be rejected.
fn run_policy_command(command: PolicyCommand) -> ExitCode {
    use gpu_market::policy::wasm::{Slot, check_module, test_module};
    let parse_slot = |name: &str| name.parse::<Slot>().map_err(|err| err.to_string());
    let result = match command {
        PolicyCommand::Keygen { out, name } => gpu_market::policy::wasm::generate_key_files(
            &out, &name,
        )
        .map(|made| {
            eprintln!(
                "gpu-market: wrote the private key {} (keep it secret) and the public key {} \
                 (key id {}); trust it in policies.toml with:",
                made.private_key.display(),
                made.public_key.display(),
                made.id
            );
            println!("[signing]\ntrusted_keys = [\"{}\"]", made.public_key_line);
            true
        })
        .map_err(|err| err.to_string()),
        PolicyCommand::Sign { file, key } => {
            gpu_market::policy::wasm::sign_module_file(&file, &key)
                .map(|(path, line)| {
                    println!("wrote {}", path.display());
                    eprintln!("{line}");
                    true
                })
                .map_err(|err| err.to_string())
        }
        PolicyCommand::Init { dir, force } => gpu_market::policy::defaults::write_to(&dir, force)
            .map(|written| {
                for path in written {
                    println!("wrote {}", path.display());
                }
                true
            })
            .map_err(|err| err.to_string()),
        PolicyCommand::Replay { .. } | PolicyCommand::Fixtures { .. } => {
            Err("replay and fixtures read the database; run through main".to_owned())
        }
        PolicyCommand::Check {
            file,
            slot,
            policies,
        } => parse_slot(&slot).and_then(|slot| {
            check_module(&file, slot, &policies)
                .map(|report| {
                    println!("{report}");
                    report.passed
                })
                .map_err(|err| err.to_string())
        }),
        PolicyCommand::Test {
            file,
            slot,
            input,
            policies,
        } => parse_slot(&slot).and_then(|slot| {
            let dir = policies.exists().then_some(policies.as_path());
            test_module(&file, slot, &input, dir)
                .map(|output| {
                    let failed = output.get("failure").is_some_and(|f| !f.is_null());
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&output).unwrap_or_default()
                    );
                    !failed
                })
                .map_err(|err| err.to_string())
        }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("gpu-market: {err}");
            ExitCode::from(2)
        }
    }
}

fn overrides_for(command: &Command, database_url: Option<&str>) -> Overrides {
    let database_url = database_url.map(Secret::new);
    match command {
        Command::Serve { bind, policies } => Overrides {
            bind: *bind,
            database_url,
            policies_dir: policies.clone(),
        },
        _ => Overrides {
            database_url,
            ..Overrides::default()
        },
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Command::Policy(command) if !command.reads_the_log() => {
            return run_policy_command(command);
        }
        Command::Simulate(args) => return gpu_market::sim::main(args, cli.config.as_deref()),
        Command::Keys(command) => return run_keys_command(command, cli.config.as_deref()),
        command => command,
    };
    let overrides = overrides_for(&command, cli.database_url.as_deref());
    let config = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("gpu-market: {err}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if matches!(command, Command::Policy(_)) {
        // Replay and fixtures print their results on standard output.
        logs.with_writer(std::io::stderr).init();
    } else {
        logs.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("gpu-market: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Serve { .. } => gpu_market::server::run(config).await,
            Command::Policy(command) => run_log_command(command, &config).await,
            // Answered above, before any runtime or database.
            Command::Simulate(_) | Command::Keys(_) => Ok(()),
            Command::Migrate => {
                let store = Store::connect(&config.database).await?;
                store.migrate().await?;
                tracing::info!(database = store.display_url(), "database migrated");
                store.close().await;
                Ok(())
            }
        }
    });
    // Work abandoned at the end of the shutdown grace (a blocking call, a stuck request) must not
    // hold the process: the grace was the bound.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gpu-market: {}", causes(&err));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each said once: many errors (ours with thiserror, sqlx's,
/// io's) already print their source in their own message, and `{:#}` would repeat it.
fn causes(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let message = cause.to_string();
        if message.is_empty() || text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}
