//! The `gpu-market` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gpu_market::config::{Config, Overrides};
use gpu_market::store::Store;
use tracing_subscriber::EnvFilter;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = match &cli.command {
        Command::Serve { bind, policies } => Overrides {
            bind: *bind,
            database_url: cli.database_url.clone(),
            policies_dir: policies.clone(),
        },
        Command::Migrate => Overrides {
            database_url: cli.database_url.clone(),
            ..Overrides::default()
        },
    };
    let config = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("gpu-market: {err}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log));
    tracing_subscriber::fmt().with_env_filter(filter).init();
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
        match cli.command {
            Command::Serve { .. } => gpu_market::server::run(config).await,
            Command::Migrate => {
                let store = Store::connect(&config.database).await?;
                store.migrate().await?;
                tracing::info!(database = store.display_url(), "database migrated");
                store.close().await;
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gpu-market: {err:#}");
            ExitCode::FAILURE
        }
    }
}
