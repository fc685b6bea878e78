//! `timeseries.csv`: one row per policy, seed and simulated hour; ready for `pandas.read_csv`.

use std::fmt::Write as _;

use super::super::lab::{Outcome, Study};
use crate::domain::Timestamp;

pub fn render(study: &Study, outcome: &Outcome) -> String {
    let mut out = String::from(
        "policy,seed,hour,time,price,multiplier,utilization,revenue,arrivals,served\n",
    );
    for (row, runs) in study.rows.iter().zip(&outcome.rows) {
        let name = quote(&row.name);
        for (seed, run) in runs.runs.iter().enumerate() {
            for (hour, point) in run.hours.iter().enumerate() {
                let start =
                    Timestamp::from_unix_seconds(study.settings.start_unix + hour as i64 * 3_600);
                let _ = writeln!(
                    out,
                    "{name},{seed},{hour},{},{:.6},{:.6},{:.6},{},{},{}",
                    start
                        .to_datetime()
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
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
