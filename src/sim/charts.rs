//! The report's charts as SVG (plotters' SVG backend writes text as SVG text: no fonts needed):
//! price and utilization over time per policy (seed 0), revenue per seed, and the oracle's curve.

use plotters::prelude::*;

use super::lab::{Outcome, Study};
use super::report::Report;

pub struct Chart {
    pub file: &'static str,
    pub title: &'static str,
    pub svg: String,
}

const SIZE: (u32, u32) = (900, 420);

fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    COLORS[i % COLORS.len()]
}

/// Named series of (x, y) points.
type Series = Vec<(String, Vec<(f64, f64)>)>;

pub fn draw(report: &Report, study: &Study, outcome: &Outcome) -> Vec<Chart> {
    let per_hour = |pick: fn(&super::engine::HourPoint) -> f64| -> Series {
        study
            .rows
            .iter()
            .zip(&outcome.rows)
            .map(|(row, runs)| {
                let points = runs
                    .runs
                    .first()
                    .map(|run| {
                        run.hours
                            .iter()
                            .enumerate()
                            .map(|(h, p)| (h as f64, pick(p)))
                            .collect()
                    })
                    .unwrap_or_default();
                (row.name.clone(), points)
            })
            .collect()
    };
    let mut charts = vec![
        Chart {
            file: "price.svg",
            title: "Average current price over the fleet (AITBC/h), seed 0",
            svg: lines(&per_hour(|p| p.price), "hour", "AITBC/h", false, false),
        },
        Chart {
            file: "utilization.svg",
            title: "Utilization per hour, seed 0",
            svg: lines(
                &per_hour(|p| p.utilization),
                "hour",
                "utilization",
                false,
                true,
            ),
        },
    ];
    let mut per_seed: Series = report
        .policies
        .iter()
        .map(|p| {
            let points = p
                .per_seed
                .iter()
                .map(|s| (s.seed as f64, s.revenue))
                .collect();
            (p.name.clone(), points)
        })
        .collect();
    if let Some(oracle) = &report.oracle {
        let points = oracle
            .revenue_per_seed
            .iter()
            .enumerate()
            .map(|(seed, r)| (seed as f64, *r))
            .collect();
        per_seed.push((format!("oracle ×{:.2}", oracle.multiplier), points));
    }
    charts.push(Chart {
        file: "revenue_per_seed.svg",
        title: "Revenue per seed (AITBC)",
        svg: lines(&per_seed, "seed", "AITBC", true, false),
    });
    if let Some(oracle) = &report.oracle {
        let curve = vec![(
            "constant multiplier".to_owned(),
            oracle
                .grid
                .iter()
                .map(|g| (g.multiplier, g.revenue))
                .collect(),
        )];
        charts.push(Chart {
            file: "oracle.svg",
            title: "Mean revenue of each constant multiplier (the oracle is the highest)",
            svg: lines(&curve, "multiplier", "AITBC", true, false),
        });
    }
    charts
}

/// A line chart; `marks` adds a dot at every point (for few points); `from_zero` starts the y axis at 0.
fn lines(series: &Series, x_label: &str, y_label: &str, marks: bool, from_zero: bool) -> String {
    let mut svg = String::new();
    let all = series.iter().flat_map(|(_, points)| points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-9 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.08).max(y1.abs() * 0.02).max(1e-6);
    let (y0, y1) = if from_zero {
        (y0.min(0.0), y1 + pad)
    } else {
        (y0 - pad, y1 + pad)
    };
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let _ = root.fill(&WHITE);
        let chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(x0..x1, y0..y1);
        let Ok(mut chart) = chart else {
            return svg_fallback();
        };
        let _ = chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .axis_desc_style(("sans-serif", 15))
            .label_style(("sans-serif", 13))
            .light_line_style(WHITE.mix(0.0))
            .draw();
        for (i, (name, points)) in series.iter().enumerate() {
            let style = color(i).stroke_width(2);
            if let Ok(drawn) = chart.draw_series(LineSeries::new(points.iter().copied(), style)) {
                drawn
                    .label(name.clone())
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color(i)));
            }
            if marks {
                let _ =
                    chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color(i).filled())));
            }
        }
        let _ = chart
            .configure_series_labels()
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperRight)
            .draw();
        let _ = root.present();
    }
    svg
}

fn svg_fallback() -> String {
    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"></svg>".to_owned()
}
