//! From command-line arguments to a [`Study`]: the sweep grid, the policies (each checked before
//! anything runs), the traces of every seed and the market settings.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use super::cli::RunArgs;
use super::engine::MarketSettings;
use super::error::SimError;
use super::generate::{DemandSpec, generate_trace, resample};
use super::inputs::{Fleet, Trace, read_demand, read_fleet};
use super::lab::{Row, Study};
use super::report::{DemandSummary, FleetSummary, Inputs, ModelSummary, SweepAxis};
use super::strategy::{Builtin, TimeoutFactory};
use super::wasm;
use crate::domain::Timestamp;

/// Most rows (policies × sweep points) one study runs.
const MAX_ROWS: usize = 1_000;
const MAX_SEEDS: usize = 10_000;

/// `KEY=V1,V2,...` into an axis of the sweep.
pub fn parse_set(text: &str) -> Result<SweepAxis, SimError> {
    let (key, values) = text
        .split_once('=')
        .ok_or_else(|| SimError::usage(format!("--set {text}: expected KEY=V1,V2,...")))?;
    let key = key.trim();
    let values: Vec<String> = values
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect();
    if key.is_empty() || values.is_empty() {
        return Err(SimError::usage(format!(
            "--set {text}: expected KEY=V1,V2,..."
        )));
    }
    Ok(SweepAxis {
        key: key.to_owned(),
        values,
    })
}

/// Every combination of the axes' values, the first axis varying slowest.
pub fn grid(axes: &[SweepAxis]) -> Vec<Vec<(String, String)>> {
    let mut points = vec![Vec::new()];
    for axis in axes {
        points = points
            .into_iter()
            .flat_map(|point| {
                axis.values.iter().map(move |v| {
                    let mut p: Vec<(String, String)> = point.clone();
                    p.push((axis.key.clone(), v.clone()));
                    p
                })
            })
            .collect();
    }
    points
}

/// The policies.toml to use: `--config`, else `policies/policies.toml` when it exists.
pub fn config_file(flag: Option<&Path>) -> Result<Option<PathBuf>, SimError> {
    match flag {
        Some(path) if path.is_file() => Ok(Some(path.to_owned())),
        Some(path) => Err(SimError::usage(format!(
            "--config {}: no such file",
            path.display()
        ))),
        None => {
            let default = Path::new("policies").join(crate::policy::wasm::CONFIG_FILE);
            Ok(default.is_file().then_some(default))
        }
    }
}

/// One row per policy and sweep point, every policy checked once before anything runs.
pub fn rows(
    policies: &[String],
    axes: &[SweepAxis],
    config: Option<&Path>,
) -> Result<Vec<Row>, SimError> {
    if policies.is_empty() {
        return Err(SimError::usage(
            "give at least one --policy (a .wasm file or builtin)",
        ));
    }
    let points = grid(axes);
    let mut rows = Vec::new();
    let mut names = std::collections::HashSet::new();
    for policy in policies {
        let base_name = if policy == "builtin" {
            "builtin".to_owned()
        } else {
            Path::new(policy)
                .file_stem()
                .map_or(policy.clone(), |s| s.to_string_lossy().into_owned())
        };
        let mut name = base_name.clone();
        let mut n = 2;
        while !names.insert(name.clone()) {
            name = format!("{base_name}#{n}");
            n += 1;
        }
        if policy == "builtin" {
            // The built-in rules read no configuration: one row whatever the sweep.
            rows.push(Row {
                name,
                policy: policy.clone(),
                sha256: None,
                settings: Vec::new(),
                stateful: false,
                factory: Arc::new(Builtin),
            });
            continue;
        }
        let module = wasm::PricingModule::load(Path::new(policy), config).map_err(|reason| {
            SimError::Policy {
                name: policy.clone(),
                reason,
            }
        })?;
        if let Some(reason) = module.stateful() {
            eprintln!(
                "warning: {reason}.\nIt runs with a fresh instance per decision, as in the server (slower)."
            );
        }
        for point in &points {
            let factory = module
                .with_settings(point)
                .map_err(|reason| SimError::Policy {
                    name: format!("{policy} with {}", describe(point)),
                    reason,
                })?;
            let row_name = if point.is_empty() {
                name.clone()
            } else {
                format!("{name} [{}]", describe(point))
            };
            rows.push(Row {
                name: row_name,
                policy: policy.clone(),
                sha256: Some(module.sha256().to_owned()),
                settings: point.clone(),
                stateful: module.stateful().is_some(),
                factory,
            });
        }
    }
    if rows.len() > MAX_ROWS {
        return Err(SimError::usage(format!(
            "{} rows (policies × sweep points): at most {MAX_ROWS}",
            rows.len()
        )));
    }
    Ok(rows)
}

fn describe(point: &[(String, String)]) -> String {
    point
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The booking-timeout policy of the config's `[booking-timeout]` slot, else the built-in rule.
pub fn timeout(config: Option<&Path>) -> Result<(Arc<dyn TimeoutFactory>, String), SimError> {
    match config {
        Some(config) => wasm::timeout_from_config(config).map_err(|reason| SimError::Policy {
            name: "booking-timeout".to_owned(),
            reason,
        }),
        None => Ok((Arc::new(Builtin), "builtin".to_owned())),
    }
}

/// The demand of every seed, and how it was made.
pub fn traces(
    args: &RunArgs,
    fleet: &Fleet,
) -> Result<(Vec<Arc<Trace>>, DemandSummary, u32), SimError> {
    if args.seeds == 0 || args.seeds > MAX_SEEDS {
        return Err(SimError::usage(format!(
            "--seeds must be in 1..={MAX_SEEDS}"
        )));
    }
    let seeds = args.seeds as u64;
    let (traces, mut summary, hours): (Vec<Trace>, DemandSummary, Option<f64>) = match &args.demand
    {
        Some(path) => {
            if args.rate.is_some() {
                return Err(SimError::usage("--rate only applies to generated demand"));
            }
            let trace = read_demand(path, fleet)?;
            let (traces, resampling) = if seeds == 1 {
                (vec![trace], "none")
            } else {
                let traces = (0..seeds)
                    .into_par_iter()
                    .map(|i| resample(&trace, args.seed, i))
                    .collect();
                (traces, "bootstrap")
            };
            let summary = DemandSummary {
                kind: "file".into(),
                file: Some(path.display().to_string()),
                hours: args.hours,
                rate: None,
                resampling: resampling.into(),
                requests_per_seed: Vec::new(),
            };
            (traces, summary, args.hours)
        }
        None => {
            let (Some(hours), Some(rate)) = (args.hours, args.rate) else {
                return Err(SimError::usage(
                    "give --demand FILE, or --hours H and --rate R to generate the demand",
                ));
            };
            let spec = DemandSpec { hours, rate };
            spec.validate()?;
            let traces = (0..seeds)
                .into_par_iter()
                .map(|i| generate_trace(fleet, spec, args.seed, i))
                .collect::<Result<Vec<_>, _>>()?;
            let summary = DemandSummary {
                kind: "generated".into(),
                file: None,
                hours: Some(hours),
                rate: Some(rate),
                resampling: "independent".into(),
                requests_per_seed: Vec::new(),
            };
            (traces, summary, Some(hours))
        }
    };
    for trace in traces.iter().take(1) {
        let unmatched = trace.unmatched_filters();
        if !unmatched.is_empty() && !args.quiet {
            eprintln!(
                "note: no GPU of the fleet matches model {}: those requests are always lost",
                unmatched.join(", ")
            );
        }
    }
    let horizon = match hours {
        Some(h) if h > 0.0 && h <= 24.0 * 366.0 => h.ceil() as u32,
        Some(_) => return Err(SimError::usage("--hours must be in (0, 8784]")),
        None => traces.iter().map(Trace::covered_hours).max().unwrap_or(1),
    };
    summary.requests_per_seed = traces.iter().map(|t| t.requests.len()).collect();
    Ok((traces.into_iter().map(Arc::new).collect(), summary, horizon))
}

pub fn start_unix(text: &str) -> Result<i64, SimError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp())
        .map_err(|e| SimError::usage(format!("--start {text}: {e}")))
}

pub fn fleet_summary(path: &Path, fleet: &Fleet) -> FleetSummary {
    FleetSummary {
        file: path.display().to_string(),
        gpus: fleet.gpus.len(),
        models: fleet
            .models
            .iter()
            .map(|m| ModelSummary {
                model: m.name.clone(),
                gpus: m.gpus.len(),
                average_asking_price: m.average_asking.as_units(),
            })
            .collect(),
    }
}

/// Everything a study needs, checked; nothing has run yet.
pub fn study(args: &RunArgs, config_flag: Option<&Path>) -> Result<(Study, Inputs), SimError> {
    let fleet_path = args
        .fleet
        .as_deref()
        .ok_or_else(|| SimError::usage("--fleet FILE is required"))?;
    let fleet = read_fleet(fleet_path)?;
    let axes = args
        .sets
        .iter()
        .map(|s| parse_set(s))
        .collect::<Result<Vec<_>, _>>()?;
    let config = config_file(config_flag)?;
    let rows = rows(&args.policies, &axes, config.as_deref())?;
    let (timeout, timeout_name) = timeout(config.as_deref())?;
    let start = start_unix(&args.start)?;
    let (traces, demand, horizon_hours) = traces(args, &fleet)?;
    let defaults = crate::config::Config::default();
    let settings = MarketSettings {
        start_unix: start,
        horizon_hours,
        history_interval_secs: defaults.pricing.history_interval_seconds.max(1) as i64,
        max_extensions: defaults.booking.max_extensions,
    };
    let inputs = Inputs {
        fleet: fleet_summary(fleet_path, &fleet),
        demand,
        seeds: traces.len(),
        seed: args.seed,
        start: Timestamp::from_unix_seconds(start)
            .to_datetime()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        horizon_hours,
        config: config.map(|c| c.display().to_string()),
        sweep: axes,
        timeout_policy: timeout_name,
        history_interval_seconds: settings.history_interval_secs,
        max_extensions: settings.max_extensions,
    };
    let study = Study {
        fleet: Arc::new(fleet),
        traces,
        settings,
        rows,
        timeout,
        oracle: !args.no_oracle,
        threads: args.threads,
    };
    Ok((study, inputs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_sets_make_a_grid() {
        let axes = vec![
            parse_set("a=1,2").unwrap(),
            parse_set("b = x , y ,z").unwrap(),
        ];
        let g = grid(&axes);
        assert_eq!(g.len(), 6);
        assert_eq!(
            g[0],
            vec![("a".into(), "1".into()), ("b".into(), "x".into())]
        );
        assert_eq!(
            g[5],
            vec![("a".into(), "2".into()), ("b".into(), "z".into())]
        );
        assert_eq!(grid(&[]), vec![Vec::<(String, String)>::new()]);
        assert!(parse_set("nokey").is_err());
    }
}
