//! The fleet map: an equirectangular world (x = longitude + 180, y = 90 - latitude, so the
//! SVG's user units are degrees) with every site as a point, grouped by state so a state's
//! colour is set once and a live update moves a point between groups. Points carry only their
//! ID and position (about 45 bytes each: 10,000 sites stay well under half a megabyte); the
//! site list beside the map is the text alternative.
//!
//! The land is a coarse outline of the continents drawn by hand for orientation only (a few
//! dozen points each), not a geographic dataset.

use std::fmt::Write;

use maud::{Markup, PreEscaped, html};

/// States in the order their groups are drawn (later on top).
pub const STATES: [&str; 6] = [
    "decommissioned",
    "pending",
    "enrolled",
    "online",
    "degraded",
    "disconnected",
];

const LAND: &[&[(i16, i16)]] = &[
    // North America
    &[
        (-168, 66),
        (-156, 71),
        (-125, 70),
        (-95, 72),
        (-80, 73),
        (-62, 60),
        (-55, 52),
        (-66, 44),
        (-76, 35),
        (-81, 25),
        (-97, 26),
        (-97, 19),
        (-87, 21),
        (-83, 10),
        (-79, 8),
        (-92, 14),
        (-105, 20),
        (-112, 30),
        (-117, 33),
        (-124, 40),
        (-124, 48),
        (-135, 58),
        (-150, 60),
        (-165, 60),
    ],
    // Greenland
    &[
        (-55, 60),
        (-45, 60),
        (-20, 70),
        (-20, 80),
        (-60, 82),
        (-72, 78),
        (-55, 70),
    ],
    // South America
    &[
        (-79, 8),
        (-60, 10),
        (-50, 0),
        (-35, -7),
        (-40, -22),
        (-48, -28),
        (-58, -38),
        (-65, -45),
        (-68, -55),
        (-74, -50),
        (-72, -30),
        (-70, -18),
        (-81, -5),
        (-78, 2),
    ],
    // Eurasia with Arabia
    &[
        (-10, 36),
        (-9, 44),
        (0, 49),
        (5, 53),
        (8, 57),
        (5, 62),
        (15, 69),
        (28, 71),
        (40, 67),
        (60, 69),
        (80, 73),
        (105, 78),
        (140, 72),
        (180, 69),
        (180, 65),
        (165, 60),
        (160, 52),
        (142, 54),
        (140, 46),
        (130, 42),
        (122, 40),
        (122, 30),
        (110, 20),
        (106, 10),
        (100, 13),
        (98, 8),
        (103, 1),
        (98, 16),
        (92, 22),
        (80, 15),
        (77, 8),
        (72, 20),
        (66, 25),
        (57, 26),
        (59, 22),
        (52, 16),
        (43, 12),
        (39, 21),
        (34, 28),
        (35, 36),
        (27, 37),
        (24, 40),
        (20, 40),
        (15, 38),
        (12, 44),
        (5, 43),
        (-5, 36),
    ],
    // Africa
    &[
        (-17, 15),
        (-17, 21),
        (-13, 28),
        (-6, 36),
        (10, 37),
        (20, 32),
        (32, 31),
        (34, 28),
        (43, 12),
        (51, 12),
        (40, -2),
        (40, -15),
        (35, -24),
        (27, -34),
        (18, -34),
        (12, -17),
        (9, -1),
        (8, 4),
        (-8, 4),
        (-15, 10),
    ],
    // Great Britain
    &[(-5, 50), (1, 51), (-2, 56), (-5, 58), (-6, 55)],
    // Japan
    &[(130, 31), (140, 35), (142, 40), (141, 45), (139, 38)],
    // Borneo
    &[(109, 1), (118, 7), (119, 0), (115, -4), (110, -2)],
    // Madagascar
    &[(49, -12), (50, -16), (45, -25), (44, -17)],
    // Australia
    &[
        (114, -22),
        (122, -18),
        (130, -12),
        (137, -12),
        (142, -11),
        (146, -19),
        (153, -27),
        (150, -37),
        (141, -38),
        (131, -31),
        (115, -34),
    ],
    // New Zealand
    &[(172, -35), (178, -38), (170, -46), (167, -45)],
    // Antarctica
    &[(-180, -72), (180, -72), (180, -90), (-180, -90)],
];

/// One site on the map.
#[derive(Debug, Clone, Copy)]
pub struct Point<'a> {
    pub id: &'a str,
    pub state: &'a str,
    pub lat: f64,
    pub lon: f64,
}

fn land() -> String {
    let mut d = String::new();
    for shape in LAND {
        for (i, (lon, lat)) in shape.iter().enumerate() {
            let _ = write!(
                d,
                "{}{} {}",
                if i == 0 { "M" } else { "L" },
                lon + 180,
                90 - lat
            );
        }
        d.push('Z');
    }
    d
}

/// The map of `points`.
pub fn render(points: &[Point<'_>]) -> Markup {
    let mut groups = String::with_capacity(points.len() * 48 + 512);
    for state in STATES {
        let _ = write!(groups, r#"<g data-state="{state}" class="s-{state}">"#);
        for p in points.iter().filter(|p| p.state == state) {
            let _ = write!(
                groups,
                r#"<circle id="m-{}" cx="{:.1}" cy="{:.1}"/>"#,
                escape(p.id),
                p.lon + 180.0,
                90.0 - p.lat
            );
        }
        groups.push_str("</g>");
    }
    let label = format!("World map of {} sites, coloured by state", points.len());
    html! {
        svg.map id="fleet-map" viewBox="0 0 360 180" role="img" aria-label=(label) xmlns="http://www.w3.org/2000/svg" {
            path.grid d="M0 30H360M0 60H360M0 90H360M0 120H360M0 150H360M60 0V180M120 0V180M180 0V180M240 0V180M300 0V180" {}
            path.land d=(land()) {}
            (PreEscaped(groups))
        }
    }
}

/// `s` escaped for an HTML attribute.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let _ = maud::Escaper::new(&mut out).write_str(s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_land_in_their_state_group_and_ids_are_escaped() {
        let points = [
            Point {
                id: "fra-1",
                state: "online",
                lat: 50.1,
                lon: 8.7,
            },
            Point {
                id: "x\"<",
                state: "disconnected",
                lat: 0.0,
                lon: 0.0,
            },
        ];
        let svg = render(&points).into_string();
        let online = svg.find(r#"<g data-state="online""#).unwrap();
        let fra = svg.find(r#"id="m-fra-1" cx="188.7" cy="39.9""#).unwrap();
        let degraded = svg.find(r#"<g data-state="degraded""#).unwrap();
        assert!(online < fra && fra < degraded);
        assert!(svg.contains("m-x&quot;&lt;"));
        assert!(!svg.contains("x\"<"));
    }
}
