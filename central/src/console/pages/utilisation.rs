//! Utilisation, fleet-wide or for one site (`?site=`): **allocated** utilisation (GPU-seconds
//! held by allocations applied at their site, over GPU-seconds available: online, healthy, not
//! drained) against **busy** utilisation (NVML's GPU utilisation averaged over the same GPUs
//! and time, from the agents' summaries) per hour over the last two days, and the busiest and
//! idlest sites now.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::IntoResponse;
use maud::{PreEscaped, html};
use meridian_common::ids::SiteId;

use crate::console::chart::{self, Line};
use crate::console::layout;
use crate::console::names::name;
use crate::console::web::{Console, PageResult, User};
use crate::services::Rpc;
use crate::services::overview::SiteRow;
use crate::services::utilisation::HourUtilisation;

/// Hours charted back from now.
const HOURS: i64 = 48;

/// The chart as SVG text: allocated and busy utilisation, percent, per hour (a gap where
/// nothing was measured).
fn chart(hours: &[HourUtilisation]) -> String {
    let line = |label: &str, colour, value: &dyn Fn(&HourUtilisation) -> Option<f64>| Line {
        label: label.into(),
        colour,
        values: hours.iter().map(|h| value(h).map(|v| v * 100.0)).collect(),
    };
    chart::hourly(
        &[
            line("allocated", chart::PALETTE[0], &|h| h.allocated),
            line("busy (NVML)", chart::PALETTE[1], &|h| h.busy),
        ],
        "utilisation, %",
        100.0,
    )
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{:.1} %", v * 100.0))
}

fn site_table(
    id: &str,
    caption: &str,
    rows: &[&SiteRow],
    busy: &BTreeMap<SiteId, f64>,
) -> maud::Markup {
    html! {
        section aria-labelledby=(id) {
            h2 id=(id) { (caption) }
            table {
                thead { tr { th scope="col" { "Site" } th scope="col" { "Tier" } th.num scope="col" { "GPUs held" } th.num scope="col" { "Share" } th.num scope="col" { "Busy (" (HOURS) " h)" } } }
                tbody { @for r in rows { tr {
                    td { a href={ "/sites/" (r.site.id) } { (r.site.id) } " " a href={ "/utilisation?site=" (r.site.id) } aria-label={ "utilisation chart of " (r.site.id) } { "chart" } } td { (name(&r.site.tier)) }
                    td.num { (r.held) "/" (r.gpus) } td.num { (format!("{:.0} %", 100.0 * r.held as f64 / r.gpus.max(1) as f64)) }
                    td.num { (pct(busy.get(&r.site.id).copied())) }
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

/// `GET /utilisation`: fleet-wide, or for one site with `?site=`.
pub async fn page(
    State(state): State<Console>,
    user: User,
    axum::extract::Query(filter): axum::extract::Query<Filter>,
) -> PageResult {
    let s = &state.services;
    let overview = s
        .fleet_overview(s.admit(user.caller(), Rpc::ListSites).await?)
        .await?;
    let site = crate::console::pages::filled(&filter.site).map(str::to_owned);
    let site_id = match &site {
        Some(id) => match overview.sites.iter().find(|r| r.site.id.as_str() == id) {
            Some(r) => Some(r.site.id.clone()),
            None => return Err(crate::services::ApiError::not_found("site", id).into()),
        },
        None => None,
    };
    let history = s
        .utilisation_history(
            s.admit(user.caller(), Rpc::ListSites).await?,
            site_id.as_ref(),
            HOURS,
        )
        .await?;
    let what = match &site {
        Some(id) => format!("Allocated and busy utilisation of site {id}"),
        None => "Allocated and busy utilisation of the fleet".to_owned(),
    };
    let mut with_gpus: Vec<&SiteRow> = overview.sites.iter().filter(|r| r.gpus > 0).collect();
    with_gpus.sort_by(|a, b| {
        (b.held as f64 / b.gpus as f64)
            .total_cmp(&(a.held as f64 / a.gpus as f64))
            .then(a.site.id.cmp(&b.site.id))
    });
    let busiest: Vec<&SiteRow> = with_gpus.iter().take(10).copied().collect();
    let idlest: Vec<&SiteRow> = with_gpus.iter().rev().take(10).copied().collect();
    let (total, held): (u32, u32) = match &site_id {
        Some(id) => overview
            .sites
            .iter()
            .find(|r| &r.site.id == id)
            .map_or((0, 0), |r| (r.gpus, r.held)),
        None => overview
            .gpus
            .values()
            .fold((0, 0), |(t, h), c| (t + c.total, h + c.held)),
    };
    let mean = |f: &dyn Fn(&HourUtilisation) -> Option<f64>| {
        let v: Vec<f64> = history.hours.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let (allocated, busy) = (mean(&|h| h.allocated), mean(&|h| h.busy));
    let body = html! {
        p { "Allocated now: " strong { (held) " of " (total) " GPUs" } " (" (format!("{:.1} %", 100.0 * held as f64 / total.max(1) as f64)) ")." }
        p { strong { "Allocated utilisation" } ": GPU-seconds held by allocations applied at their site over GPU-seconds available (online, healthy, not drained). "
            strong { "Busy utilisation" } ": NVML's GPU utilisation averaged over the same GPUs and time, from the summaries the sites' agents report. "
            "A wide gap between them is GPUs held and paid for but idle. Allocations come from the placements central holds (a deleted workload's past use is not charted); GPUs in MIG mode have no busy utilisation (NVML gives none)." }
        form.filters method="get" action="/utilisation" {
            label for="u-site" { "One site (empty: the fleet)" input id="u-site" name="site" type="text" value=(site.as_deref().unwrap_or("")); }
            button type="submit" { "Show" }
        }
        table #utilisation-summary {
            caption { "Over the last " (HOURS) " hours, " (history.available) " GPUs available" }
            thead { tr { th scope="col" { "Measure" } th.num scope="col" { "Mean of the hours" } } }
            tbody {
                tr { th scope="row" { "Allocated" } td.num #allocated-mean { (pct(allocated)) } }
                tr { th scope="row" { "Busy (NVML)" } td.num #busy-mean { (pct(busy)) } }
            }
        }
        figure {
            div role="img" aria-label={ (what) ", hourly, over the last " (HOURS) " hours" } { (PreEscaped(chart(&history.hours))) }
            figcaption { (what) ": allocated (blue) and busy (red), hourly, over the last " (HOURS) " hours." }
        }
        div.cards {
            (site_table("busiest", "Busiest sites", &busiest, &history.busy_by_site))
            (site_table("idlest", "Idlest sites", &idlest, &history.busy_by_site))
        }
    };
    Ok(layout::page("Utilisation", &user, "/utilisation", body).into_response())
}
