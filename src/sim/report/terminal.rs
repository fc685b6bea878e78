//! The report in the terminal: the side-by-side table, the comparisons in words and the oracle.

use super::{Report, Timing, table};

/// Pads every column to its widest cell.
fn render_table(t: &table::Table) -> String {
    let mut widths: Vec<usize> = t.headers.iter().map(|h| h.chars().count()).collect();
    for row in &t.rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                let pad = w - cell.chars().count();
                if i == 0 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = line(t.headers.clone());
    out.push('\n');
    for row in &t.rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

pub fn print_summary(report: &Report, timing: &Timing) {
    let i = &report.inputs;
    let requests = super::markdown::summarize_counts(&i.demand.requests_per_seed);
    println!(
        "{} GPUs, {} seed(s), {} h from {}, {requests} requests per seed",
        i.fleet.gpus, i.seeds, i.horizon_hours, i.start,
    );
    println!();
    print!("{}", render_table(&table::build(report, Some(timing))));
    if i.seeds > 1 {
        println!(
            "(means over {} seeds; ± = 95 % confidence interval)",
            i.seeds
        );
    }
    println!();
    for c in &report.comparisons {
        println!("{}", c.summary);
    }
    if let Some(line) = table::oracle_line(report) {
        println!("{line}");
    }
}
