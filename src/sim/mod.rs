//! The backtesting lab, `gpu-market simulate`: replays demand against pricing policies side by side,
//! through the same WebAssembly runtime, policy inputs and market rules as the live service.
//!
//! - [`inputs`]: the fleet and demand CSVs; [`generate`]: synthetic traces and bootstrap resamples.
//! - [`engine`]: one run on a simulated clock, through the market's pure rules (`market::rules`).
//! - [`strategy`]: native strategies; [`wasm`]: WebAssembly ones (one policy tenant per run).
//! - [`lab`]: every policy × sweep point × seed in parallel; [`oracle`]: the best constant multiplier.
//! - [`metrics`], [`stats`]: the figures and their intervals; [`report`], `charts`: the outputs.

mod charts;
pub mod cli;
pub mod engine;
pub mod error;
pub mod generate;
pub mod inputs;
pub mod lab;
pub mod metrics;
pub mod oracle;
mod progress;
pub mod report;
pub mod setup;
pub mod stats;
pub mod strategy;
pub mod wasm;

use std::path::Path;
use std::process::ExitCode;

pub use error::SimError;
pub use progress::Progress;

use cli::{Args, GenerateArgs, RunArgs, SimCommand};
use report::{PolicyTiming, Report, Timing};

/// `gpu-market simulate ...`; `config` is the binary's global `--config` (here: a policies.toml).
pub fn main(args: Args, config: Option<&Path>) -> ExitCode {
    let result = match args.command {
        Some(SimCommand::Generate(generate)) => run_generate(&generate),
        None => run_study(&args.run, config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gpu-market simulate: {err}");
            ExitCode::from(2)
        }
    }
}

fn run_generate(args: &GenerateArgs) -> Result<(), SimError> {
    let fleet = inputs::read_fleet(&args.fleet)?;
    let spec = generate::DemandSpec {
        hours: args.hours,
        rate: args.rate,
    };
    spec.validate()?;
    let text = generate::generate_csv(&fleet, spec, &mut generate::rng_for(args.seed, 0));
    match &args.out {
        Some(path) => std::fs::write(path, text).map_err(|e| SimError::write(path, e)),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// Checks everything, runs the study, writes the report.
pub fn run_study(args: &RunArgs, config: Option<&Path>) -> Result<(), SimError> {
    let (study, inputs) = setup::study(args, config)?;
    let progress = Progress::new(!args.quiet);
    let outcome = study.run(&progress)?;
    let report = Report::build(&study, &outcome, inputs);
    let timing = timing(&study, &outcome);
    let files = report::write_all(&args.out, &report, &study, &outcome, &timing)?;
    if !args.quiet {
        report::print_summary(&report, &timing);
        println!(
            "\nwrote {} in {:.2} s: {}",
            args.out.display(),
            outcome.wall.as_secs_f64(),
            files.join(", ")
        );
    }
    Ok(())
}

fn timing(study: &lab::Study, outcome: &lab::Outcome) -> Timing {
    Timing {
        threads: study.threads.unwrap_or_else(rayon::current_num_threads),
        total_seconds: outcome.wall.as_secs_f64(),
        policies: study
            .rows
            .iter()
            .zip(&outcome.rows)
            .map(|(row, runs)| {
                let seconds: f64 = runs.wall.iter().map(|d| d.as_secs_f64()).sum();
                let decisions: u64 = runs
                    .runs
                    .iter()
                    .map(|r| r.pricing_calls + r.timeout_calls)
                    .sum();
                PolicyTiming {
                    name: row.name.clone(),
                    run_seconds: seconds,
                    decisions,
                    micros_per_decision: if decisions > 0 {
                        seconds * 1e6 / decisions as f64
                    } else {
                        0.0
                    },
                    decisions_per_second: if seconds > 0.0 {
                        decisions as f64 / seconds
                    } else {
                        0.0
                    },
                }
            })
            .collect(),
    }
}
