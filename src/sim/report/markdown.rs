//! `report.md`: the same figures as report.json, as tables a person reads; charts linked as SVG files.

use std::fmt::Write as _;

use super::super::charts::Chart;
use super::{Report, table};

pub fn render(report: &Report, charts: &[Chart]) -> String {
    let mut out = String::from("# Simulation report\n\n");
    inputs(&mut out, report);
    let t = table::build(report, None);
    let _ = writeln!(out, "## Policies\n");
    let _ = writeln!(out, "| {} |", t.headers.join(" | "));
    let _ = writeln!(
        out,
        "|{}",
        t.headers.iter().map(|_| "---|").collect::<String>()
    );
    for row in &t.rows {
        let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
    if report.inputs.seeds > 1 {
        let _ = writeln!(
            out,
            "Figures are means over {} seeds; `±` is the half-width of the 95 % confidence interval.\n",
            report.inputs.seeds
        );
    }
    if !report.comparisons.is_empty() {
        let _ = writeln!(out, "## Paired comparisons\n");
        for c in &report.comparisons {
            let _ = writeln!(out, "- {}", c.summary);
        }
        out.push('\n');
    }
    if let Some(line) = table::oracle_line(report) {
        let _ = writeln!(
            out,
            "## Oracle\n\n{line} Regret = oracle revenue − policy revenue.\n"
        );
    }
    let _ = writeln!(out, "## Charts\n");
    for chart in charts {
        let _ = writeln!(out, "![{}]({})\n", chart.title, chart.file);
    }
    let _ = writeln!(
        out,
        "Time series per hour: `timeseries.csv`. Wall-clock timings: `timing.json`."
    );
    out
}

pub(super) fn inputs(out: &mut String, report: &Report) {
    let i = &report.inputs;
    let demand = match (&i.demand.file, i.demand.hours, i.demand.rate) {
        (Some(file), _, _) => format!("trace `{file}`"),
        (None, Some(hours), Some(rate)) => format!("generated, {hours} h at {rate} requests/h"),
        _ => "generated".to_owned(),
    };
    let _ = writeln!(
        out,
        "- fleet `{}`: {} GPUs of {} model(s)\n- demand: {demand}; {} seed(s) from seed {} ({} resampling); requests per seed: {}\n- horizon {} h from {}; config {}; booking timeout: {}\n",
        i.fleet.file,
        i.fleet.gpus,
        i.fleet.models.len(),
        i.seeds,
        i.seed,
        i.demand.resampling,
        summarize_counts(&i.demand.requests_per_seed),
        i.horizon_hours,
        i.start,
        i.config
            .as_deref()
            .map_or("none (defaults)".to_owned(), |c| format!("`{c}`")),
        i.timeout_policy,
    );
}

/// `n`, or `lo-hi` when seeds differ.
pub(super) fn summarize_counts(counts: &[usize]) -> String {
    match (counts.iter().min(), counts.iter().max()) {
        (Some(lo), Some(hi)) if lo == hi => lo.to_string(),
        (Some(lo), Some(hi)) => format!("{lo}-{hi}"),
        _ => "0".to_owned(),
    }
}
