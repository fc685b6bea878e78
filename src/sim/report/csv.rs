//! `timeseries.csv`: one row per policy, seed and simulated hour; ready for `pandas.read_csv`.

use std::fmt::Write as _;

use super::super::lab::{Outcome, Study};
use crate::market::time::rfc3339;

pub fn render(study: &Study, outcome: &Outcome) -> String {
    let mut out = String::from(
        "policy,seed,hour,time,price,multiplier,utilization,revenue,arrivals,served\n",
    );
    for (row, runs) in study.rows.iter().zip(&outcome.rows) {
        let name = quote(&row.name);
        for (seed, run) in runs.runs.iter().enumerate() {
            for (hour, point) in run.hours.iter().enumerate() {
                let start = (study.settings.start_unix + hour as i64 * 3_600) * 1_000_000;
                let _ = writeln!(
                    out,
                    "{name},{seed},{hour},{},{:.6},{:.6},{:.6},{},{},{}",
                    rfc3339(start),
                    point.price,
                    point.multiplier,
                    point.utilization,
                    point.revenue,
                    point.arrivals,
                    point.served
                );
            }
        }
    }
    out
}

fn quote(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}
