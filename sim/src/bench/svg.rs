//! Line plots as hand-written SVG (a few dozen lines, so no plotting crate): axes with round
//! tick values, one polyline per series, a legend, and optional horizontal target lines.
//! [`well_formed`] is a small XML checker the tests use on what [`line_chart`] writes.

use std::fmt::Write as _;

use super::results::PlotData;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 56.0;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// A horizontal line marking a target, with its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub y: f64,
    pub label: String,
}

/// Escapes text for SVG character data and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// About `n` round tick values (1, 2 or 5 times a power of ten) covering `lo..=hi`.
pub fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo || n == 0 {
        return vec![lo];
    }
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() * step;
    let mut out = Vec::new();
    let mut v = first;
    while v <= hi + step * 1e-9 && out.len() < 100 {
        // Snap away float noise (0.30000000000000004).
        out.push((v / step).round() * step);
        v += step;
    }
    out
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

fn step_of(ticks: &[f64]) -> f64 {
    match ticks {
        [a, b, ..] => b - a,
        _ => 1.0,
    }
}

/// Draws `plot` as a line chart with `markers` as dashed horizontal lines. Axes start at 0
/// (figures here are latencies, counts and rates) and reach the largest value or marker.
/// Non-finite points are left out; a plot with no points says so in its body.
pub fn line_chart(plot: &PlotData, markers: &[Marker]) -> String {
    let points = || {
        plot.series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let x_max = points().map(|p| p.0).fold(0.0f64, f64::max);
    let y_max = points()
        .map(|p| p.1)
        .chain(markers.iter().map(|m| m.y).filter(|y| y.is_finite()))
        .fold(0.0f64, f64::max);
    let x_min = points().map(|p| p.0).fold(0.0f64, f64::min);
    let y_min = points().map(|p| p.1).fold(0.0f64, f64::min);
    let pad = |lo: f64, hi: f64| if hi > lo { hi } else { lo + 1.0 };
    let (x_hi, y_hi) = (pad(x_min, x_max), pad(y_min, y_max * 1.05));
    let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let sx = |x: f64| LEFT + (x - x_min) / (x_hi - x_min) * pw;
    let sy = |y: f64| TOP + ph - (y - y_min) / (y_hi - y_min) * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        WIDTH / 2.0,
        escape(&plot.title)
    );
    // Grid and ticks.
    let xt = ticks(x_min, x_hi, 8);
    for &t in &xt {
        let x = sx(t);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#e6e6e6"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 16.0,
            label(t, step_of(&xt))
        );
    }
    let yt = ticks(y_min, y_hi, 6);
    for &t in &yt {
        let y = sy(t);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e6e6e6"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            label(t, step_of(&yt))
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw:.1}" height="{ph:.1}" fill="none" stroke="#444444"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        HEIGHT - 14.0,
        escape(&plot.x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{}</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        escape(&plot.y_label)
    );
    for m in markers.iter().filter(|m| m.y.is_finite()) {
        let y = sy(m.y);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#888888" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555555">{}</text>"##,
            LEFT + pw,
            LEFT + pw - 4.0,
            y - 4.0,
            escape(&m.label)
        );
    }
    if points().next().is_none() {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">no data</text>"#,
            LEFT + pw / 2.0,
            TOP + ph / 2.0
        );
    }
    for (i, series) in plot.series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let pts: Vec<(f64, f64)> = series
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        if !pts.is_empty() {
            let mut path = String::new();
            for (x, y) in &pts {
                let _ = write!(path, "{:.1},{:.1} ", sx(*x), sy(*y));
            }
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                path.trim_end()
            );
            if pts.len() <= 30 {
                for (x, y) in &pts {
                    let _ = writeln!(
                        s,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                        sx(*x),
                        sy(*y)
                    );
                }
            }
        }
        let ly = TOP + 16.0 + 18.0 * i as f64;
        let lx = LEFT + 12.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
            ly - 4.0,
            lx + 22.0,
            ly - 4.0,
            lx + 28.0,
            escape(&series.name)
        );
    }
    s.push_str("</svg>\n");
    s
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
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("B2 &lt;fan-out&gt; &amp; &quot;latency&quot;"));
        assert!(svg.contains("agents back") && svg.contains("target 20k"));
        assert!(!svg.contains("NaN"));
        // Three points of the second series: small enough to get dots.
        assert_eq!(svg.matches("<circle").count(), 2);
    }

    #[test]
    fn an_empty_chart_says_so_and_is_still_well_formed() {
        let svg = line_chart(&plot(vec![]), &[]);
        well_formed(&svg).unwrap();
        assert!(svg.contains("no data"));
        let svg = line_chart(
            &plot(vec![Series {
                name: "one".into(),
                points: vec![(3.0, 3.0)],
            }]),
            &[],
        );
        well_formed(&svg).unwrap();
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(0.0, 1.0, 4), vec![0.0, 0.5, 1.0]);
        let t = ticks(0.0, 52_500.0, 8);
        assert_eq!(t.first(), Some(&0.0));
        assert!(t.iter().all(|v| v % 5_000.0 == 0.0));
        assert_eq!(ticks(5.0, 5.0, 4), vec![5.0]);
        assert_eq!(label(0.1 + 0.2, 0.1), "0.3");
        assert_eq!(label(1.0, 0.2), "1.0");
        assert_eq!(label(0.05, 0.05), "0.05");
        assert_eq!(label(20_000.0, 5_000.0), "20k");
        assert_eq!(label(12_500.0, 500.0), "12500");
        assert_eq!(label(40.0, 20.0), "40");
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
