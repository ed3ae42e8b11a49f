//! Line plots as SVG, drawn with the `plotters` crate (its SVG backend and basic elements
//! only): axes with round tick values, one line per series (with dots when a series has few
//! points), a legend, and optional dashed horizontal target lines. [`well_formed`] is a small
//! XML checker the tests use on what [`line_chart`] writes, and [`series_lines`] counts the
//! series lines in it.

use plotters::coord::ranged1d::Ranged;
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::results::PlotData;

const WIDTH: u32 = 760;
const HEIGHT: u32 = 440;
/// Stroke width of the series lines; axes, ticks and markers are thinner, so
/// [`series_lines`] can tell them apart.
const SERIES_STROKE: u32 = 2;
/// Series with at most this many points get a dot on each point.
const DOTTED_UP_TO: usize = 30;
/// Most tick labels on each axis (plotters picks round values: 1, 2 or 5 times a power of ten).
const X_TICKS: usize = 10;
const Y_TICKS: usize = 8;
const COLOURS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];
const GRID: RGBColor = RGBColor(0xe6, 0xe6, 0xe6);
const MARKER: RGBColor = RGBColor(0x88, 0x88, 0x88);
const MARKER_TEXT: RGBColor = RGBColor(0x55, 0x55, 0x55);
const FONT: &str = "sans-serif";
// Plotters takes whole font sizes and its SVG backend writes them divided by 1.24: these come
// out as about 12 and 15 px.
const TEXT_SIZE: f64 = 15.0;
const TITLE_SIZE: f64 = 19.0;

/// A horizontal line marking a target, with its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub y: f64,
    pub label: String,
}

/// A tick label: thousands and millions abbreviated, otherwise as many decimals as the
/// tick step needs (so one axis reads 0.2, 0.4 ... 1.0, not 0.200 ... 1).
fn label(v: f64, step: f64) -> String {
    let a = v.abs();
    if a >= 1e6 && step >= 1e5 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 && step >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        let decimals = if step > 0.0 && step.is_finite() {
            (-step.log10().floor()).clamp(0.0, 6.0) as usize
        } else {
            0
        };
        format!("{v:.decimals$}")
    }
}

/// The step between the tick values plotters puts on `lo..hi` for at most `n` ticks.
fn tick_step(lo: f64, hi: f64, n: usize) -> f64 {
    match RangedCoordf64::from(lo..hi).key_points(n)[..] {
        [a, b, ..] => b - a,
        _ => 1.0,
    }
}

/// Text as plotters should draw it: control characters (never valid in SVG) as spaces.
fn text(t: &str) -> String {
    t.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Draws `plot` as a line chart with `markers` as dashed horizontal lines. Axes start at 0
/// (figures here are latencies, counts and rates) and reach the largest value or marker.
/// Non-finite points are left out; a plot with no points says so in its body.
pub fn line_chart(plot: &PlotData, markers: &[Marker]) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        if let Err(e) = draw(&root, plot, markers) {
            // Not expected (the backend writes to a string and measures text without fonts),
            // but a benchmark run should keep its figures even if a plot fails.
            tracing::warn!(plot = %plot.file, error = %e, "drawing the plot failed");
            let _ = root.draw(&Text::new(
                text(&format!("plot failed: {e}")),
                (20, 20),
                (FONT, TEXT_SIZE),
            ));
        }
        // Closes the document; the backend cannot fail on a string.
        let _ = root.present();
    }
    svg
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    plot: &PlotData,
    markers: &[Marker],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let points = || {
        plot.series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(finite)
    };
    let markers: Vec<&Marker> = markers.iter().filter(|m| m.y.is_finite()).collect();
    let x_max = points().map(|p| p.0).fold(0.0f64, f64::max);
    let y_max = points()
        .map(|p| p.1)
        .chain(markers.iter().map(|m| m.y))
        .fold(0.0f64, f64::max);
    let x_min = points().map(|p| p.0).fold(0.0f64, f64::min);
    let y_min = points().map(|p| p.1).fold(0.0f64, f64::min);
    let pad = |lo: f64, hi: f64| if hi > lo { hi } else { lo + 1.0 };
    let (x_hi, y_hi) = (pad(x_min, x_max), pad(y_min, y_max * 1.05));
    let (x_step, y_step) = (
        tick_step(x_min, x_hi, X_TICKS),
        tick_step(y_min, y_hi, Y_TICKS),
    );

    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption(text(&plot.title), (FONT, TITLE_SIZE))
        .margin(12)
        .margin_right(24)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(x_min..x_hi, y_min..y_hi)?;
    chart
        .configure_mesh()
        .x_labels(X_TICKS)
        .y_labels(Y_TICKS)
        .x_label_formatter(&|v| label(*v, x_step))
        .y_label_formatter(&|v| label(*v, y_step))
        .x_desc(text(&plot.x_label))
        .y_desc(text(&plot.y_label))
        .label_style((FONT, TEXT_SIZE))
        .axis_desc_style((FONT, TEXT_SIZE))
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .draw()?;

    for m in &markers {
        chart.draw_series(std::iter::once(DashedPathElement::new(
            [(x_min, m.y), (x_hi, m.y)],
            6,
            4,
            MARKER.stroke_width(1),
        )))?;
        chart.draw_series(std::iter::once(
            EmptyElement::at((x_hi, m.y))
                + Text::new(
                    text(&m.label),
                    (-4, -4),
                    (FONT, TEXT_SIZE)
                        .into_font()
                        .color(&MARKER_TEXT)
                        .pos(Pos::new(HPos::Right, VPos::Bottom)),
                ),
        ))?;
    }
    if points().next().is_none() {
        chart.draw_series(std::iter::once(Text::new(
            "no data",
            ((x_min + x_hi) / 2.0, (y_min + y_hi) / 2.0),
            TextStyle::from((FONT, TEXT_SIZE).into_font())
                .pos(Pos::new(HPos::Center, VPos::Center)),
        )))?;
    }
    for (i, series) in plot.series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let pts: Vec<(f64, f64)> = series.points.iter().filter(finite).copied().collect();
        if pts.len() <= DOTTED_UP_TO {
            chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, colour.filled())))?;
        }
        // An empty series draws no line but keeps its legend entry.
        let line =
            (!pts.is_empty()).then(|| PathElement::new(pts, colour.stroke_width(SERIES_STROKE)));
        chart
            .draw_series(line)?
            .label(text(&series.name))
            .legend(move |(x, y)| Rectangle::new([(x, y - 2), (x + 20, y + 2)], colour.filled()));
    }
    if !plot.series.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, TEXT_SIZE))
            .background_style(WHITE.mix(0.85))
            .border_style(GRID)
            .draw()?;
    }
    Ok(())
}

/// How many series lines `svg` (as [`line_chart`] writes it) draws: its polylines as wide
/// as a series line. Axes, ticks, target markers and legend swatches are not counted.
pub fn series_lines(svg: &str) -> usize {
    let wide = format!(" stroke-width=\"{SERIES_STROKE}\"");
    svg.split('<')
        .filter(|tag| tag.starts_with("polyline ") && tag.contains(&wide))
        .count()
}

/// Checks that `xml` is a well-formed XML document: one root element, properly nested and
/// closed tags, quoted attributes, no stray `<` or `&` in text. Enough for what this module
/// writes; not a validating parser.
pub fn well_formed(xml: &str) -> Result<(), String> {
    let b = xml.as_bytes();
    let mut i = 0;
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let check_text = |text: &str, at: usize| -> Result<(), String> {
        let mut rest = text;
        while let Some(p) = rest.find('&') {
            let after = &rest[p + 1..];
            let end = after
                .find(';')
                .ok_or_else(|| format!("bare & at byte {at}"))?;
            let name = &after[..end];
            let ok = matches!(name, "amp" | "lt" | "gt" | "quot" | "apos")
                || (name.starts_with('#') && name.len() > 1);
            if !ok {
                return Err(format!("unknown entity &{name}; at byte {at}"));
            }
            rest = &after[end + 1..];
        }
        Ok(())
    };
    while i < b.len() {
        if b[i] != b'<' {
            let end = xml[i..].find('<').map_or(b.len(), |p| i + p);
            let text = &xml[i..end];
            if stack.is_empty() && !text.trim().is_empty() {
                return Err(format!("text outside the root element at byte {i}"));
            }
            if text.contains('>') {
                // Allowed by XML, but never written here: treat as a sign of broken markup.
                return Err(format!("stray > in text at byte {i}"));
            }
            check_text(text, i)?;
            i = end;
            continue;
        }
        if xml[i..].starts_with("<?") {
            i += xml[i..].find("?>").ok_or("unclosed <?")? + 2;
            continue;
        }
        if xml[i..].starts_with("<!--") {
            i += xml[i..].find("-->").ok_or("unclosed comment")? + 3;
            continue;
        }
        let end = i + xml[i..]
            .find('>')
            .ok_or_else(|| format!("unclosed tag at byte {i}"))?;
        let inner = &xml[i + 1..end];
        if let Some(name) = inner.strip_prefix('/') {
            let open = stack
                .pop()
                .ok_or_else(|| format!("</{name}> without an open tag"))?;
            if open != name.trim() {
                return Err(format!("</{}> closes <{open}>", name.trim()));
            }
        } else {
            let self_closing = inner.ends_with('/');
            let body = inner.trim_end_matches('/');
            let name_end = body.find(|c: char| c.is_whitespace()).unwrap_or(body.len());
            let name = &body[..name_end];
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
            {
                return Err(format!("bad tag name {name:?} at byte {i}"));
            }
            check_attributes(&body[name_end..], i)?;
            if stack.is_empty() {
                roots += 1;
                if roots > 1 {
                    return Err(format!("second root element <{name}> at byte {i}"));
                }
            }
            if !self_closing {
                stack.push(name.to_owned());
            }
        }
        i = end + 1;
    }
    if let Some(open) = stack.pop() {
        return Err(format!("<{open}> is never closed"));
    }
    if roots == 0 {
        return Err("no root element".into());
    }
    Ok(())
}

fn check_attributes(mut rest: &str, at: usize) -> Result<(), String> {
    let mut seen = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(());
        }
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("attribute without a value at byte {at}"))?;
        let name = rest[..eq].trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!("bad attribute name {name:?} at byte {at}"));
        }
        if seen.contains(&name) {
            return Err(format!("attribute {name} repeated at byte {at}"));
        }
        seen.push(name);
        let after = rest[eq + 1..].trim_start();
        let quote = after
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
            .ok_or_else(|| format!("attribute {name} is not quoted at byte {at}"))?;
        let close = after[1..]
            .find(quote)
            .ok_or_else(|| format!("attribute {name} is not closed at byte {at}"))?;
        let value = &after[1..1 + close];
        if value.contains('<') {
            return Err(format!("< inside attribute {name} at byte {at}"));
        }
        if value.contains('&') && !value.split('&').skip(1).all(|p| p.contains(';')) {
            return Err(format!("bare & inside attribute {name} at byte {at}"));
        }
        rest = &after[close + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::results::Series;

    fn plot(series: Vec<Series>) -> PlotData {
        PlotData {
            file: "x.svg".into(),
            title: "B2 <fan-out> & \"latency\"".into(),
            x_label: "ms".into(),
            y_label: "sites acked (%)".into(),
            series,
        }
    }

    /// The text of every `<text>` element of `svg`, in order.
    fn texts(svg: &str) -> Vec<&str> {
        svg.split("<text ")
            .skip(1)
            .filter_map(|t| t.split_once('>'))
            .filter_map(|(_, rest)| rest.split_once("</text>"))
            .map(|(body, _)| body.trim())
            .collect()
    }

    #[test]
    fn a_chart_is_well_formed_and_holds_its_data() {
        let p = plot(vec![
            Series {
                name: "agents back".into(),
                points: (0..200).map(|i| (i as f64, (i * i) as f64)).collect(),
            },
            Series {
                name: "raw quinn".into(),
                points: vec![(0.0, 0.0), (50.0, 100.0), (f64::NAN, 3.0)],
            },
        ]);
        let svg = line_chart(
            &p,
            &[Marker {
                y: 20_000.0,
                label: "target 20k".into(),
            }],
        );
        well_formed(&svg).unwrap();
        assert_eq!(series_lines(&svg), 2);
        let texts = texts(&svg);
        assert!(texts.contains(&"B2 &lt;fan-out&gt; &amp; &quot;latency&quot;"));
        for t in [
            "agents back",
            "raw quinn",
            "target 20k",
            "ms",
            "sites acked (%)",
        ] {
            assert!(texts.contains(&t), "{t:?} not in {texts:?}");
        }
        // Round ticks, thousands abbreviated: y runs to 199^2 * 1.05 ~ 41.6k.
        assert!(texts.contains(&"0") && texts.contains(&"20k"), "{texts:?}");
        assert!(!svg.contains("NaN"));
        // The dashed marker is drawn in thin pieces, none counted as a series.
        assert!(svg.matches("stroke-width=\"1\"").count() > 2);
        // Two finite points of the second series: few enough to get dots.
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(!svg.contains("no data"));
    }

    #[test]
    fn an_empty_chart_says_so_and_is_still_well_formed() {
        let svg = line_chart(&plot(vec![]), &[]);
        well_formed(&svg).unwrap();
        assert!(texts(&svg).contains(&"no data"));
        assert_eq!(series_lines(&svg), 0);
        let svg = line_chart(
            &plot(vec![Series {
                name: "one".into(),
                points: vec![(3.0, 3.0)],
            }]),
            &[],
        );
        well_formed(&svg).unwrap();
        assert_eq!(series_lines(&svg), 1);
        // Control characters never reach the document.
        let mut p = plot(vec![]);
        p.title = "a\u{1}b".into();
        let svg = line_chart(&p, &[]);
        well_formed(&svg).unwrap();
        assert!(texts(&svg).contains(&"a b"));
    }

    #[test]
    fn tick_labels_are_round() {
        assert_eq!(tick_step(0.0, 10.0, 6), 2.0);
        assert_eq!(tick_step(0.0, 10.0, 5), 5.0);
        assert_eq!(tick_step(0.0, 52_500.0, Y_TICKS), 10_000.0);
        assert_eq!(tick_step(0.0, 1.0, 4), 0.5);
        assert_eq!(label(0.1 + 0.2, 0.1), "0.3");
        assert_eq!(label(1.0, 0.2), "1.0");
        assert_eq!(label(0.05, 0.05), "0.05");
        assert_eq!(label(20_000.0, 5_000.0), "20k");
        assert_eq!(label(12_500.0, 500.0), "12500");
        assert_eq!(label(40.0, 20.0), "40");
        assert_eq!(label(2_500_000.0, 500_000.0), "2.5M");
    }

    #[test]
    fn the_checker_refuses_broken_xml() {
        for bad in [
            "",
            "<a>",
            "<a></b>",
            "<a/><b/>",
            "<a x=1/>",
            "<a x=\"1\" x=\"2\"/>",
            "<a>&nbsp;</a>",
            "<a>x & y</a>",
            "<a x=\"<\"/>",
            "text<a/>",
            "<a><b></a></b>",
        ] {
            assert!(well_formed(bad).is_err(), "{bad:?} accepted");
        }
        well_formed("<?xml version=\"1.0\"?><!-- c --><a x='1'><b y=\"&amp;\"/>t &lt; u</a>")
            .unwrap();
    }
}
