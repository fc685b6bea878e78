//! The side-by-side table every format shows: one row per policy (and sweep point).

use super::{PolicyReport, Report, Timing};
use crate::sim::stats::Interval;

pub struct Table {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

fn interval_of<'a>(policy: &'a PolicyReport, name: &str) -> Option<&'a Interval> {
    policy
        .ci95
        .as_ref()
        .and_then(|ci| ci.0.iter().find(|(n, _)| *n == name).map(|(_, i)| i))
}

/// `value` or `value ± half-width` with `--seeds` > 1.
fn figure(policy: &PolicyReport, name: &str, value: f64, decimals: usize, scale: f64) -> String {
    match interval_of(policy, name) {
        Some(i) => format!(
            "{:.decimals$} ± {:.decimals$}",
            value * scale,
            i.half_width * scale
        ),
        None => format!("{:.decimals$}", value * scale),
    }
}

pub fn build(report: &Report, timing: Option<&Timing>) -> Table {
    let mut headers = vec![
        "policy",
        "revenue",
        "rev/GPU-h",
        "util %",
        "fill %",
        "lost",
        "lost value",
        "surplus",
        "price mean/med/p95",
        "volatility",
        "calls",
        "fallbacks",
        "fuel mean/max",
        "regret",
    ];
    if timing.is_some() {
        headers.push("µs/decision");
    }
    let rows = report
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let m = &p.metrics;
            let mut row = vec![
                p.name.clone(),
                figure(p, "revenue", m.revenue, 2, 1.0),
                format!("{:.4}", m.revenue_per_gpu_hour),
                figure(p, "utilization", m.utilization, 1, 100.0),
                figure(p, "fill_rate", m.fill_rate, 1, 100.0),
                format!("{:.1}", m.lost_requests),
                format!("{:.2}", m.lost_value),
                format!("{:.2}", m.consumer_surplus),
                format!(
                    "{:.3}/{:.3}/{:.3}",
                    m.mean_price, m.median_price, m.p95_price
                ),
                format!("{:.4}", m.price_volatility),
                format!("{:.0}", m.policy_calls),
                format!("{:.0}", m.fallbacks),
                format!("{:.0}/{:.0}", m.fuel_mean, m.fuel_max),
                p.regret.map_or("-".to_owned(), |r| {
                    if p.ci95.is_some() {
                        format!("{:.2} ± {:.2}", r.mean, r.half_width)
                    } else {
                        format!("{:.2}", r.mean)
                    }
                }),
            ];
            if let Some(timing) = timing {
                row.push(
                    timing
                        .policies
                        .get(i)
                        .map_or("-".to_owned(), |t| format!("{:.3}", t.micros_per_decision)),
                );
            }
            row
        })
        .collect();
    Table { headers, rows }
}

/// The oracle's line, in words.
pub fn oracle_line(report: &Report) -> Option<String> {
    report.oracle.as_ref().map(|o| {
        let ci = o
            .revenue_ci95
            .map(|i| format!(" ± {:.2}", i.half_width))
            .unwrap_or_default();
        format!(
            "Oracle (best constant multiplier in hindsight, grid 0.50-3.00 step 0.05): ×{:.2}, revenue {:.2}{ci} AITBC, fill rate {:.1} %.",
            o.multiplier,
            o.revenue,
            o.metrics.fill_rate * 100.0
        )
    })
}
