//! The SVG chart of the after-action report: one bar per expected action
//! (time taken, in scenario minutes; green met, red late, grey missed) with
//! a black tick at its deadline. Drawn with plotters' SVG backend.

use plotters::prelude::*;

use crate::report::{Report, html_escape};

/// One bar.
struct Bar {
    label: String,
    minutes: f64,
    deadline: f64,
    color: RGBColor,
}

const GREEN: RGBColor = RGBColor(46, 125, 50);
const RED: RGBColor = RGBColor(176, 0, 32);
const GREY: RGBColor = RGBColor(158, 158, 158);

fn bars(r: &Report) -> Vec<Bar> {
    r.expectations
        .iter()
        .filter_map(|e| {
            let deadline = e.within_s as f64 / 60.0;
            let (minutes, color) = match (e.outcome.as_str(), e.response_s) {
                ("met", Some(s)) => (s as f64 / 60.0, GREEN),
                ("late", Some(s)) => (s as f64 / 60.0, RED),
                ("missed" | "overdue", _) => (
                    e.anchor_s
                        .map(|a| r.exercise.elapsed_s.saturating_sub(a) as f64 / 60.0)
                        .unwrap_or(deadline)
                        .max(deadline),
                    GREY,
                ),
                _ => return None,
            };
            Some(Bar {
                label: format!("{} {} {}", e.id, e.who, e.outcome),
                minutes,
                deadline,
                color,
            })
        })
        .collect()
}

/// The chart as an `<svg>` element (or a short note when there is nothing
/// to draw yet).
pub fn svg(r: &Report) -> String {
    let bars = bars(r);
    if bars.is_empty() {
        return "<p>No expected action has a result yet.</p>".into();
    }
    match draw(&bars) {
        Ok(svg) => svg,
        Err(e) => format!("<p>(chart unavailable: {})</p>", html_escape(&e)),
    }
}

fn draw(bars: &[Bar]) -> Result<String, String> {
    let n = bars.len();
    let top = bars
        .iter()
        .map(|b| b.minutes.max(b.deadline))
        .fold(1.0_f64, f64::max)
        * 1.15;
    let width = u32::try_from(160 + 90 * n).unwrap_or(4000).min(4000);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Time to act against the deadline (scenario minutes)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(20)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..n as f64, 0f64..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("minutes")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                let x = i as f64;
                Rectangle::new([(x + 0.2, 0.0), (x + 0.8, b.minutes)], b.color.filled())
            }))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                let x = i as f64;
                PathElement::new(
                    vec![(x + 0.1, b.deadline), (x + 0.9, b.deadline)],
                    BLACK.stroke_width(3),
                )
            }))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                Text::new(
                    b.label.clone(),
                    (i as f64 + 0.1, b.minutes.max(b.deadline) + top * 0.03),
                    ("sans-serif", 11),
                )
            }))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
