//! Command-line arguments of `gpu-market simulate` (the `--config` flag is the binary's global one and
//! is handed in separately).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<SimCommand>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Write a synthetic demand trace for a fleet (Poisson arrivals with a daily cycle and one surge).
    Generate(GenerateArgs),
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Fleet CSV: model,memory_gb,region,base_price,count.
    #[arg(long)]
    pub fleet: PathBuf,
    /// Length of the trace in hours.
    #[arg(long)]
    pub hours: f64,
    /// Requests per hour (before the daily cycle and the surge).
    #[arg(long)]
    pub rate: f64,
    /// Random seed: the same seed gives the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output file (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `gpu-market simulate --fleet F (--demand T | --hours H --rate R) --policy P [--policy P2 ...]`;
/// `--config FILE` names the policies.toml to use (default: policies/policies.toml when it exists).
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Fleet CSV: model,memory_gb,region,base_price,count.
    #[arg(long)]
    pub fleet: Option<PathBuf>,
    /// Demand trace CSV: arrival_seconds,model,duration_hours,max_price. Without it the demand is
    /// generated from --hours and --rate.
    #[arg(long)]
    pub demand: Option<PathBuf>,
    /// Hours to generate; with --demand, the horizon (default: the trace's last hour).
    #[arg(long)]
    pub hours: Option<f64>,
    /// Requests per hour of the generated demand.
    #[arg(long)]
    pub rate: Option<f64>,
    /// A pricing policy: a .wasm component or `builtin` (asking price). Repeat to compare.
    #[arg(long = "policy", value_name = "P")]
    pub policies: Vec<String>,
    /// Sweep a pricing config key over values, e.g. `--set max_multiplier=2,2.5,3`; repeat for a grid.
    #[arg(long = "set", value_name = "KEY=V1,V2,...")]
    pub sets: Vec<String>,
    /// Independent generated traces, or bootstrap resamples of the given trace.
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
    /// Base seed of every random draw.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Directory for report.json, report.md, report.html, timeseries.csv, timing.json and charts.
    #[arg(long, default_value = "sim-report")]
    pub out: PathBuf,
    /// The simulated clock at the trace's second 0 (RFC 3339, UTC); sets time of day and weekday.
    #[arg(long, default_value = "2026-01-05T00:00:00Z")]
    pub start: String,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Skip the oracle (the 51 constant-multiplier runs per seed).
    #[arg(long)]
    pub no_oracle: bool,
    /// No progress bar and no table: only errors and the report files.
    #[arg(long)]
    pub quiet: bool,
}

/// `simulate` on its own, for tests and embedding: `Args::try_parse_from(["simulate", "--fleet", ...])`.
#[derive(Parser)]
#[command(name = "simulate")]
struct Standalone {
    #[command(flatten)]
    args: Args,
}

impl Args {
    pub fn try_parse_from<I, T>(words: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Standalone::try_parse_from(words).map(|s| s.args)
    }
}
