//! `report.html`: one self-contained page (inline CSS and SVG charts, no script, no external file)
//! that opens offline in any browser.

use std::fmt::Write as _;

use super::super::charts::Chart;
use super::{Report, Timing, table};

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Drops the XML declaration so the SVG can sit inside HTML.
fn inline_svg(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(at) => &svg[at..],
        None => svg,
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}\
table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}\
td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}figure{margin:1.5em 0}\
figcaption{font-weight:600;margin-bottom:.3em}.note{color:#666;font-size:13px}.wide{overflow-x:auto}";

pub fn render(report: &Report, timing: &Timing, charts: &[Chart]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>gpu-market simulation report</title><style>{STYLE}</style></head><body>\n<h1>Simulation report</h1>\n"
    );
    let mut inputs = String::new();
    super::markdown::inputs(&mut inputs, report);
    out.push_str("<ul>");
    for line in inputs.lines().filter(|l| l.starts_with("- ")) {
        let _ = write!(out, "<li>{}</li>", escape(&line[2..]).replace('`', ""));
    }
    out.push_str("</ul>\n<h2>Policies</h2>\n<div class=\"wide\"><table><tr>");
    let t = table::build(report, Some(timing));
    for h in &t.headers {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr>\n");
    for row in &t.rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", escape(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table></div>\n");
    if report.inputs.seeds > 1 {
        let _ = writeln!(
            out,
            "<p class=\"note\">Means over {} seeds; ± is the half-width of the 95 % confidence interval.</p>",
            report.inputs.seeds
        );
    }
    let _ = writeln!(
        out,
        "<p class=\"note\">µs/decision is wall-clock time on this machine ({} thread(s), {:.2} s in all); every other figure is deterministic.</p>",
        timing.threads, timing.total_seconds
    );
    if !report.comparisons.is_empty() {
        out.push_str("<h2>Paired comparisons</h2>\n<ul>");
        for c in &report.comparisons {
            let _ = write!(out, "<li>{}</li>", escape(&c.summary));
        }
        out.push_str("</ul>\n");
    }
    if let Some(line) = table::oracle_line(report) {
        let _ = writeln!(
            out,
            "<h2>Oracle</h2>\n<p>{} Regret = oracle revenue − policy revenue.</p>",
            escape(&line)
        );
    }
    out.push_str("<h2>Charts</h2>\n");
    for chart in charts {
        let _ = writeln!(
            out,
            "<figure><figcaption>{}</figcaption>{}</figure>",
            escape(chart.title),
            inline_svg(&chart.svg)
        );
    }
    out.push_str("</body></html>\n");
    out
}
