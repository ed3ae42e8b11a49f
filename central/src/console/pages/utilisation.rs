//! Utilisation: GPUs held per tier over the last two days (from the placements central
//! stores), and the busiest and idlest sites now. The metering issue adds usage and cost here.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::IntoResponse;
use maud::{PreEscaped, html};
use meridian_common::ids::Timestamp;
use meridian_common::model::Placement;
use plotters::prelude::*;

use crate::console::layout;
use crate::console::names::name;
use crate::console::web::{Console, PageResult, User};
use crate::services::Rpc;
use crate::services::overview::SiteRow;

/// Hours charted back from now.
const HOURS: i64 = 48;

/// GPUs held at `t` by `placements`, per series: `series` names the series a site's GPUs
/// count in (`None`: not charted).
fn held_at(
    placements: &[Placement],
    series: &dyn Fn(&str) -> Option<String>,
    t: Timestamp,
) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for p in placements {
        let active = p.decided_at <= t && p.window.is_none_or(|w| w.contains(t));
        if !active {
            continue;
        }
        for a in &p.assignments {
            if let Some(name) = series(a.site.as_str()) {
                *out.entry(name).or_default() += a.slot.gpu_indices().len() as u32;
            }
        }
    }
    out
}

/// The chart as SVG text.
fn chart(series: &BTreeMap<String, Vec<(i64, u32)>>) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 320)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let max = series
            .values()
            .flatten()
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0)
            .max(1);
        let built = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(-HOURS..0i64, 0u32..max + max / 10 + 1);
        if let Ok(mut chart) = built {
            let _ = chart
                .configure_mesh()
                .x_desc("hours from now")
                .y_desc("GPUs held")
                .draw();
            let colours = [
                RGBColor(11, 79, 163),
                RGBColor(179, 38, 30),
                RGBColor(27, 127, 59),
            ];
            for (i, (tier, points)) in series.iter().enumerate() {
                let colour = colours[i % colours.len()];
                let line = PathElement::new(points.clone(), colour.stroke_width(2));
                if let Ok(drawn) = chart.draw_series(std::iter::once(line)) {
                    drawn
                        .label(tier.clone())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
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

fn site_table(id: &str, caption: &str, rows: &[&SiteRow]) -> maud::Markup {
    html! {
        section aria-labelledby=(id) {
            h2 id=(id) { (caption) }
            table {
                thead { tr { th scope="col" { "Site" } th scope="col" { "Tier" } th.num scope="col" { "GPUs held" } th.num scope="col" { "Share" } } }
                tbody { @for r in rows { tr {
                    td { a href={ "/sites/" (r.site.id) } { (r.site.id) } " " a href={ "/utilisation?site=" (r.site.id) } aria-label={ "utilisation chart of " (r.site.id) } { "chart" } } td { (name(&r.site.tier)) }
                    td.num { (r.held) "/" (r.gpus) } td.num { (format!("{:.0} %", 100.0 * r.held as f64 / r.gpus.max(1) as f64)) }
                } } }
            }
        }
    }
}

/// The utilisation page's filter.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Filter {
    site: Option<String>,
}

/// `GET /utilisation`: per tier, or for one site with `?site=`.
pub async fn page(
    State(state): State<Console>,
    user: User,
    axum::extract::Query(filter): axum::extract::Query<Filter>,
) -> PageResult {
    let s = &state.services;
    let overview = s
        .fleet_overview(s.admit(user.caller(), Rpc::ListSites).await?)
        .await?;
    let placements = s
        .reservations(s.admit(user.caller(), Rpc::ListWorkloads).await?, None)
        .await?;
    let tiers: BTreeMap<&str, String> = overview
        .sites
        .iter()
        .map(|r| (r.site.id.as_str(), name(&r.site.tier)))
        .collect();
    let site = crate::console::pages::filled(&filter.site).map(str::to_owned);
    if let Some(id) = &site
        && !tiers.contains_key(id.as_str())
    {
        return Err(crate::services::ApiError::not_found("site", id).into());
    }
    let names: Vec<String> = match &site {
        Some(id) => vec![id.clone()],
        None => vec!["core".to_owned(), "edge".to_owned()],
    };
    let group = |s: &str| match &site {
        Some(id) => (id == s).then(|| id.clone()),
        None => Some(tiers.get(s).cloned().unwrap_or_else(|| "unknown".into())),
    };
    let now = s.now().as_millis();
    let mut series: BTreeMap<String, Vec<(i64, u32)>> = BTreeMap::new();
    for h in -HOURS..=0 {
        let held = held_at(
            &placements,
            &group,
            Timestamp::from_millis(now + h * 3_600_000),
        );
        for name in &names {
            series
                .entry(name.clone())
                .or_default()
                .push((h, held.get(name).copied().unwrap_or(0)));
        }
    }
    let what = match &site {
        Some(id) => format!("GPUs held on site {id}"),
        None => "GPUs held per tier".to_owned(),
    };
    let mut with_gpus: Vec<&SiteRow> = overview.sites.iter().filter(|r| r.gpus > 0).collect();
    with_gpus.sort_by(|a, b| {
        (b.held as f64 / b.gpus as f64)
            .total_cmp(&(a.held as f64 / a.gpus as f64))
            .then(a.site.id.cmp(&b.site.id))
    });
    let busiest: Vec<&SiteRow> = with_gpus.iter().take(10).copied().collect();
    let idlest: Vec<&SiteRow> = with_gpus.iter().rev().take(10).copied().collect();
    let (total, held): (u32, u32) = overview
        .gpus
        .values()
        .fold((0, 0), |(t, h), c| (t + c.total, h + c.held));
    let body = html! {
        p { "Allocated now: " strong { (held) " of " (total) " GPUs" } " (" (format!("{:.1} %", 100.0 * held as f64 / total.max(1) as f64)) "). "
            "History comes from the placements central holds: a deleted workload's past use is not charted." }
        form.filters method="get" action="/utilisation" {
            label for="u-site" { "One site (empty: per tier)" input id="u-site" name="site" type="text" value=(site.as_deref().unwrap_or("")); }
            button type="submit" { "Show" }
        }
        figure {
            div role="img" aria-label={ (what) " over the last " (HOURS) " hours" } { (PreEscaped(chart(&series))) }
            figcaption { (what) ", hourly, over the last " (HOURS) " hours." }
        }
        div.cards {
            (site_table("busiest", "Busiest sites", &busiest))
            (site_table("idlest", "Idlest sites", &idlest))
        }
    };
    Ok(layout::page("Utilisation", &user, "/utilisation", body).into_response())
}
