//! The report: built once from a study's runs as plain data (`report.json`), then written as Markdown,
//! HTML with inline charts, a CSV time series and a terminal table. Nothing in [`Report`] depends on
//! the wall clock; timings go to `timing.json` ([`Timing`]).

mod csv;
mod html;
mod markdown;
mod table;
mod terminal;

use std::path::Path;

use serde::Serialize;

use super::charts;
use super::error::SimError;
use super::lab::{Outcome, Study};
use super::metrics::Metrics;
use super::stats::{Interval, mean};

pub use terminal::print_summary;

/// What went in; enough to run the study again.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inputs {
    pub fleet: FleetSummary,
    pub demand: DemandSummary,
    pub seeds: usize,
    pub seed: u64,
    /// The simulated clock at the trace's second 0, RFC 3339.
    pub start: String,
    pub horizon_hours: u32,
    /// The policies.toml whose pricing config, guardrails and booking-timeout slot were used.
    pub config: Option<String>,
    pub sweep: Vec<SweepAxis>,
    pub timeout_policy: String,
    pub history_interval_seconds: i64,
    pub max_extensions: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetSummary {
    pub file: String,
    pub gpus: usize,
    pub models: Vec<ModelSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSummary {
    pub model: String,
    pub gpus: usize,
    pub average_asking_price: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemandSummary {
    /// `file` or `generated`.
    pub kind: String,
    pub file: Option<String>,
    pub hours: Option<f64>,
    pub rate: Option<f64>,
    /// `none` (seed 0 is the trace itself), `bootstrap` (resamples of a file) or `independent`
    /// (a new generated trace per seed).
    pub resampling: String,
    /// Requests in each seed's trace.
    pub requests_per_seed: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepAxis {
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyReport {
    pub name: String,
    pub policy: String,
    pub sha256: Option<String>,
    pub settings: std::collections::BTreeMap<String, String>,
    /// The module's answers depend on earlier calls, so every decision used a fresh instance.
    pub fresh_instance_per_decision: bool,
    /// Means over seeds (the values themselves with one seed).
    pub metrics: Metrics,
    /// 95 % confidence interval of each metric, with `--seeds` > 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci95: Option<Ci95>,
    /// Oracle revenue − this policy's revenue (mean and interval over seeds).
    pub regret: Option<Interval>,
    /// Each seed's main figures.
    pub per_seed: Vec<SeedFigures>,
}

/// Intervals keyed by metric name, in [`Metrics::NAMES`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct Ci95(pub Vec<(&'static str, Interval)>);

impl Serialize for Ci95 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, interval) in &self.0 {
            map.serialize_entry(name, interval)?;
        }
        map.end()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SeedFigures {
    pub seed: usize,
    pub revenue: f64,
    pub fill_rate: f64,
    pub utilization: f64,
    pub regret: Option<f64>,
}

/// A policy against the first one, paired seed by seed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub policy: String,
    pub baseline: String,
    /// Revenue difference in AITBC.
    pub revenue_difference: Interval,
    /// The same, in percent of the baseline's mean revenue.
    pub revenue_difference_percent: Interval,
    /// Fill-rate difference in percentage points.
    pub fill_rate_difference_points: Interval,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OracleReport {
    pub multiplier: f64,
    pub revenue: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revenue_ci95: Option<Interval>,
    pub metrics: Metrics,
    pub revenue_per_seed: Vec<f64>,
    /// Mean revenue of every multiplier of the grid.
    pub grid: Vec<GridPoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GridPoint {
    pub multiplier: f64,
    pub revenue: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Version of this document's shape (docs/simulate.md).
    pub schema: u32,
    pub inputs: Inputs,
    pub policies: Vec<PolicyReport>,
    pub comparisons: Vec<Comparison>,
    pub oracle: Option<OracleReport>,
}

/// Wall-clock figures: `timing.json`, the terminal and the HTML page, never `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timing {
    pub threads: usize,
    pub total_seconds: f64,
    pub policies: Vec<PolicyTiming>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyTiming {
    pub name: String,
    /// Wall-clock seconds of all this policy's runs added up.
    pub run_seconds: f64,
    /// Pricing and booking-timeout decisions over those runs.
    pub decisions: u64,
    /// Microseconds of simulation per decision (engine included).
    pub micros_per_decision: f64,
    pub decisions_per_second: f64,
}

/// Six decimals: enough for micro-AITBC, short enough to read.
fn round6(v: f64) -> f64 {
    if v.is_finite() {
        (v * 1e6).round() / 1e6
    } else {
        0.0
    }
}

fn round_metrics(m: Metrics) -> Metrics {
    Metrics::from_values(&m.values().into_iter().map(round6).collect::<Vec<_>>())
}

fn round_interval(i: Interval) -> Interval {
    Interval {
        mean: round6(i.mean),
        low: round6(i.low),
        high: round6(i.high),
        half_width: round6(i.half_width),
        std_dev: round6(i.std_dev),
    }
}

fn column(metrics: &[Metrics], index: usize) -> Vec<f64> {
    metrics.iter().map(|m| m.values()[index]).collect()
}

impl Report {
    pub fn build(study: &Study, outcome: &Outcome, inputs: Inputs) -> Self {
        let seeds = study.seeds();
        let oracle_revenue = outcome.oracle.as_ref().map(|o| o.revenue_per_seed());
        let policies: Vec<PolicyReport> = study
            .rows
            .iter()
            .zip(&outcome.rows)
            .map(|(row, runs)| {
                let means: Vec<f64> = (0..Metrics::NAMES.len())
                    .map(|i| mean(&column(&runs.metrics, i)))
                    .collect();
                let ci95 = (seeds > 1).then(|| {
                    Ci95(
                        Metrics::NAMES
                            .iter()
                            .enumerate()
                            .map(|(i, name)| {
                                (
                                    *name,
                                    round_interval(Interval::of(&column(&runs.metrics, i))),
                                )
                            })
                            .collect(),
                    )
                });
                let regrets: Option<Vec<f64>> = oracle_revenue.as_ref().map(|oracle| {
                    oracle
                        .iter()
                        .zip(&runs.metrics)
                        .map(|(o, m)| o - m.revenue)
                        .collect()
                });
                PolicyReport {
                    name: row.name.clone(),
                    policy: row.policy.clone(),
                    sha256: row.sha256.clone(),
                    settings: row.settings.iter().cloned().collect(),
                    fresh_instance_per_decision: row.stateful,
                    metrics: round_metrics(Metrics::from_values(&means)),
                    ci95,
                    regret: regrets.as_ref().map(|r| round_interval(Interval::of(r))),
                    per_seed: runs
                        .metrics
                        .iter()
                        .enumerate()
                        .map(|(seed, m)| SeedFigures {
                            seed,
                            revenue: round6(m.revenue),
                            fill_rate: round6(m.fill_rate),
                            utilization: round6(m.utilization),
                            regret: regrets.as_ref().map(|r| round6(r[seed])),
                        })
                        .collect(),
                }
            })
            .collect();
        let comparisons = compare(&policies, &outcome.rows, seeds);
        let oracle = outcome.oracle.as_ref().map(|o| {
            let best = o.best();
            let revenue = o.revenue_per_seed();
            let metrics: Vec<f64> = (0..Metrics::NAMES.len())
                .map(|i| mean(&column(&o.metrics[best], i)))
                .collect();
            OracleReport {
                multiplier: o.grid[best].multiplier(),
                revenue: round6(mean(&revenue)),
                revenue_ci95: (seeds > 1).then(|| round_interval(Interval::of(&revenue))),
                metrics: round_metrics(Metrics::from_values(&metrics)),
                revenue_per_seed: revenue.iter().copied().map(round6).collect(),
                grid: o
                    .grid
                    .iter()
                    .zip(&o.metrics)
                    .map(|(point, runs)| GridPoint {
                        multiplier: point.multiplier(),
                        revenue: round6(mean(&column(runs, 0))),
                    })
                    .collect(),
            }
        });
        Self {
            schema: 1,
            inputs,
            policies,
            comparisons,
            oracle,
        }
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

fn compare(
    policies: &[PolicyReport],
    rows: &[super::lab::RowRuns],
    seeds: usize,
) -> Vec<Comparison> {
    let Some(first) = rows.first() else {
        return Vec::new();
    };
    let base_revenue = mean(&first.metrics.iter().map(|m| m.revenue).collect::<Vec<_>>());
    policies
        .iter()
        .zip(rows)
        .skip(1)
        .map(|(policy, runs)| {
            let paired = |f: fn(&Metrics) -> f64, scale: f64| {
                let d: Vec<f64> = runs
                    .metrics
                    .iter()
                    .zip(&first.metrics)
                    .map(|(m, b)| (f(m) - f(b)) * scale)
                    .collect();
                Interval::of(&d)
            };
            let revenue = paired(|m| m.revenue, 1.0);
            let percent_scale = if base_revenue > 0.0 {
                100.0 / base_revenue
            } else {
                0.0
            };
            let percent = paired(|m| m.revenue, percent_scale);
            let fill = paired(|m| m.fill_rate, 100.0);
            let summary = words(&policy.name, &policies[0].name, percent, fill, seeds);
            Comparison {
                policy: policy.name.clone(),
                baseline: policies[0].name.clone(),
                revenue_difference: round_interval(revenue),
                revenue_difference_percent: round_interval(percent),
                fill_rate_difference_points: round_interval(fill),
                summary,
            }
        })
        .collect()
}

/// "B earns 7.2 % ± 1.9 % more than A over 30 seeds; its fill rate is 1.3 ± 0.4 points lower."
fn words(name: &str, base: &str, revenue: Interval, fill: Interval, seeds: usize) -> String {
    let over = if seeds > 1 {
        format!("over {seeds} seeds")
    } else {
        "on one run".to_owned()
    };
    let percent = if seeds > 1 {
        format!("{:.1} % ± {:.1} %", revenue.mean.abs(), revenue.half_width)
    } else {
        format!("{:.1} %", revenue.mean.abs())
    };
    let points = if seeds > 1 {
        format!("{:.1} ± {:.1} points", fill.mean.abs(), fill.half_width)
    } else {
        format!("{:.1} points", fill.mean.abs())
    };
    let mut text = format!(
        "{name} earns {percent} {} than {base} {over}",
        if revenue.mean >= 0.0 { "more" } else { "less" },
    );
    if seeds > 1 && revenue.low <= 0.0 && revenue.high >= 0.0 {
        text.push_str(" (the interval includes 0: no clear difference)");
    }
    text.push_str(&format!(
        "; its fill rate is {points} {}.",
        if fill.mean >= 0.0 { "higher" } else { "lower" },
    ));
    text
}

/// Writes report.json, report.md, report.html, timeseries.csv, timing.json and the charts into `dir`.
pub fn write_all(
    dir: &Path,
    report: &Report,
    study: &Study,
    outcome: &Outcome,
    timing: &Timing,
) -> Result<Vec<String>, SimError> {
    std::fs::create_dir_all(dir).map_err(|e| SimError::write(dir, e))?;
    let charts = charts::draw(report, study, outcome);
    let mut files = vec![
        ("report.json".to_owned(), report.to_json()),
        ("report.md".to_owned(), markdown::render(report, &charts)),
        (
            "report.html".to_owned(),
            html::render(report, timing, &charts),
        ),
        ("timeseries.csv".to_owned(), csv::render(study, outcome)),
        (
            "timing.json".to_owned(),
            serde_json::to_string_pretty(timing).unwrap_or_default() + "\n",
        ),
    ];
    files.extend(
        charts
            .iter()
            .map(|chart| (chart.file.to_owned(), chart.svg.clone())),
    );
    for (name, text) in &files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| SimError::write(&path, e))?;
    }
    Ok(files.into_iter().map(|(name, _)| name).collect())
}
