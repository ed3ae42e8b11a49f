//! Hourly line charts as SVG text (plotters): one value per hour and series, oldest first, a
//! gap where a series has no value, a dot for a lone hour.

use plotters::prelude::*;

/// One series of a chart.
#[derive(Debug, Clone)]
pub struct Line {
    pub label: String,
    pub colour: RGBColor,
    /// One per hour, oldest first; `None`: nothing measured then.
    pub values: Vec<Option<f64>>,
}

/// Colours for up to eight series, distinguishable and dark enough on white.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(11, 79, 163),
    RGBColor(179, 38, 30),
    RGBColor(27, 122, 62),
    RGBColor(122, 62, 150),
    RGBColor(176, 96, 0),
    RGBColor(0, 118, 128),
    RGBColor(90, 90, 90),
    RGBColor(150, 40, 110),
];

/// The chart: `lines` over the hours ending now (the last value is the current hour), the y
/// axis from 0 to `y_max` (at least the largest value) described by `y_desc`.
pub fn hourly(lines: &[Line], y_desc: &str, y_max: f64) -> String {
    let hours = lines.iter().map(|l| l.values.len()).max().unwrap_or(0) as i64;
    let top = lines
        .iter()
        .flat_map(|l| l.values.iter().flatten())
        .fold(y_max, |m, v| m.max(*v))
        .max(1e-9);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 320)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let built = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(-((hours - 1).max(1))..0i64, 0.0..top * 1.05);
        if let Ok(mut chart) = built {
            let _ = chart
                .configure_mesh()
                .x_desc("hours from now")
                .y_desc(y_desc)
                .draw();
            for line in lines {
                let n = line.values.len() as i64;
                let at = |i: usize| i as i64 - (n - 1);
                let colour = line.colour;
                // One path per run of hours with a value: no line across a gap.
                let mut runs: Vec<Vec<(i64, f64)>> = vec![Vec::new()];
                for (i, v) in line.values.iter().enumerate() {
                    match v {
                        Some(v) => runs.last_mut().expect("one").push((at(i), *v)),
                        None if runs.last().is_some_and(|r| !r.is_empty()) => runs.push(Vec::new()),
                        None => {}
                    }
                }
                runs.retain(|r| !r.is_empty());
                let mut first = true;
                for run in runs {
                    let points = run.clone();
                    if let Ok(drawn) = chart.draw_series(std::iter::once(PathElement::new(
                        run,
                        colour.stroke_width(2),
                    ))) && std::mem::take(&mut first)
                    {
                        drawn.label(line.label.clone()).legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 16, y)], colour)
                        });
                    }
                    if points.len() == 1 {
                        let _ = chart.draw_series(
                            points
                                .into_iter()
                                .map(|p| Circle::new(p, 3, colour.filled())),
                        );
                    }
                }
            }
            let _ = chart
                .configure_series_labels()
                .background_style(WHITE)
                .border_style(BLACK)
                .draw();
        }
        let _ = root.present();
    }
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_each_series_and_breaks_at_gaps() {
        let svg = hourly(
            &[
                Line {
                    label: "acme".into(),
                    colour: PALETTE[0],
                    values: vec![Some(1.0), Some(2.0), None, Some(4.0), Some(5.0)],
                },
                Line {
                    label: "globex".into(),
                    colour: PALETTE[1],
                    values: vec![None, None, None, Some(3.0), None],
                },
            ],
            "GPU-hours",
            0.0,
        );
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("acme") && svg.contains("globex"));
        assert!(svg.contains("GPU-hours"));
        // acme: two runs (a gap at hour 2), globex: one lone dot.
        assert_eq!(svg.matches("<circle").count(), 1);
    }
}
