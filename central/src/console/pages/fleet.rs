//! The fleet page: the map, counts by state and tier, GPUs by model, and the site list with
//! drifting sites first; and its live-update stream.

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::extract::{Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use crate::console::map::{self, Point, STATES};
use crate::console::names::{name, time};
use crate::console::web::{
    Console, PageError, PageResult, User, page_bounds, page_number, query_without_page,
};
use crate::console::{layout, pages::filled};
use crate::services::Rpc;
use crate::services::overview::SiteRow;

/// Rows per page of the site list.
const ROWS: usize = 50;

/// The fleet page's filters.
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    state: Option<String>,
    tier: Option<String>,
    q: Option<String>,
    page: Option<usize>,
}

fn keep(row: &SiteRow, f: &Filters) -> bool {
    filled(&f.state).is_none_or(|s| name(&row.site.state) == s)
        && filled(&f.tier).is_none_or(|t| name(&row.site.tier) == t)
        && filled(&f.q).is_none_or(|q| {
            let q = q.to_lowercase();
            row.site.id.as_str().contains(&q) || row.site.name.as_str().to_lowercase().contains(&q)
        })
}

/// `GET /fleet`.
pub async fn page(
    State(state): State<Console>,
    user: User,
    Query(filters): Query<Filters>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let services = &state.services;
    let call = services.admit(user.caller(), Rpc::ListSites).await?;
    let overview = services.fleet_overview(call).await?;
    let states: Vec<String> = overview.sites.iter().map(|r| name(&r.site.state)).collect();
    let points: Vec<Point<'_>> = overview
        .sites
        .iter()
        .zip(&states)
        .map(|(r, s)| Point {
            id: r.site.id.as_str(),
            state: s,
            lat: r.site.location.lat,
            lon: r.site.location.lon,
        })
        .collect();
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &states {
        *by_state.entry(s).or_default() += 1;
    }
    let mut by_tier: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for r in &overview.sites {
        let e = by_tier.entry(name(&r.site.tier)).or_default();
        e.0 += 1;
        if r.site.state == meridian_common::model::SiteState::Online {
            e.1 += 1;
        }
    }
    let mut rows: Vec<&SiteRow> = overview
        .sites
        .iter()
        .filter(|r| keep(r, &filters))
        .collect();
    rows.sort_by_key(|r| !r.drifting());
    let drifting = overview.sites.iter().filter(|r| r.drifting()).count();
    let page = page_number(filters.page);
    let (from, to) = page_bounds(page, ROWS, rows.len());
    let query = query_without_page(raw);
    let body = html! {
        p.legend {
            span aria-hidden="true" { @for s in ["online", "disconnected", "degraded", "pending"] { span class={ "s-" (s) } { "● " (s) } } }
            span id="live-status" role="status" aria-live="polite" { "Static (live updates need JavaScript)" }
        }
        (map::render(&points))
        div.cards {
            section aria-labelledby="by-state" {
                h2 id="by-state" { "Sites by state" }
                table {
                    thead { tr { th scope="col" { "State" } th.num scope="col" { "Sites" } } }
                    tbody {
                        @for s in STATES {
                            tr { td class={ "s-" (s) } { (s) } td.num data-count-state=(s) { (by_state.get(s).copied().unwrap_or(0)) } }
                        }
                    }
                }
            }
            section aria-labelledby="by-tier" {
                h2 id="by-tier" { "Sites by tier" }
                table {
                    thead { tr { th scope="col" { "Tier" } th.num scope="col" { "Sites" } th.num scope="col" { "Online" } } }
                    tbody { @for (tier, (n, online)) in &by_tier { tr { td { (tier) } td.num { (n) } td.num { (online) } } } }
                }
            }
            section aria-labelledby="gpus" {
                h2 id="gpus" { "GPUs by model" }
                table {
                    thead { tr { th scope="col" { "Model" } th scope="col" { "Tier" } th.num scope="col" { "GPUs" } th.num scope="col" { "Held" } } }
                    tbody {
                        @for ((model, tier), c) in &overview.gpus {
                            tr { td { (model) } td { (name(tier)) } td.num { (c.total) } td.num { (c.held) } }
                        }
                    }
                }
            }
        }
        section aria-labelledby="sites" {
            h2 id="sites" { "Sites (" (drifting) " with drift, listed first)" }
            form.filters method="get" action="/fleet" {
                label for="f-q" { "Name or ID" input id="f-q" name="q" type="search" value=(filled(&filters.q).unwrap_or("")); }
                label for="f-state" { "State"
                    select id="f-state" name="state" {
                        option value="" { "any" }
                        @for s in STATES { option value=(s) selected[filled(&filters.state) == Some(s)] { (s) } }
                    }
                }
                label for="f-tier" { "Tier"
                    select id="f-tier" name="tier" {
                        option value="" { "any" }
                        @for t in ["edge", "core"] { option value=(t) selected[filled(&filters.tier) == Some(t)] { (t) } }
                    }
                }
                button type="submit" { "Filter" }
            }
            p { (rows.len()) " sites match." }
            table {
                thead { tr {
                    th scope="col" { "Site" } th scope="col" { "Name" } th scope="col" { "Tier" } th scope="col" { "State" }
                    th.num scope="col" { "Desired" } th.num scope="col" { "Applied" } th.num scope="col" { "GPUs held" } th scope="col" { "Last seen" }
                } }
                tbody {
                    @for r in &rows[from..to] {
                        tr {
                            td { a href={ "/sites/" (r.site.id) } { (r.site.id) } }
                            td { (r.site.name) }
                            td { (name(&r.site.tier)) }
                            td data-site-state=(r.site.id) class={ "s-" (name(&r.site.state)) } { (name(&r.site.state)) }
                            td.num { (r.desired) } td.num { (r.applied) @if r.drifting() { " (drift)" } }
                            td.num { (r.held) "/" (r.gpus) }
                            td { (time(r.last_seen)) }
                        }
                    }
                }
            }
            (layout::pager("/fleet", &query, page, to < rows.len()))
        }
    };
    Ok(layout::page("Fleet", &user, "/fleet", body).into_response())
}

/// `GET /fleet/events`: every site change from now on, as server-sent events named `site`
/// (JSON: id, state, tier, lat, lon, revision); `reload` when this stream fell too far behind.
pub async fn events(State(state): State<Console>, user: User) -> Result<Response, PageError> {
    state.services.admit(user.caller(), Rpc::ListSites).await?;
    let Ok(permit) = std::sync::Arc::clone(&state.streams).try_acquire_owned() else {
        return Ok((
            StatusCode::TOO_MANY_REQUESTS,
            "too many live-update streams; retry later",
        )
            .into_response());
    };
    let rx = state.events.subscribe();
    let stream = futures_util::stream::unfold((rx, permit), |(mut rx, permit)| async move {
        let event = match rx.recv().await {
            Ok(change) => Event::default()
                .event("site")
                .data(serde_json::to_string(&*change).unwrap_or_default()),
            Err(RecvError::Lagged(_)) => Event::default().event("reload").data("behind"),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(event), (rx, permit)))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
