//! Workloads and reservations: the list, one workload with its placement explained, the
//! what-if form (a dry run of a spec), and reservations on a calendar per site and tenant.

use axum::extract::{Form, Path, Query, State};
use axum::response::IntoResponse;
use maud::{Markup, html};
use meridian_common::ids::{SiteId, Timestamp};
use meridian_common::model::{Placement, WorkloadSpec};
use serde::Deserialize;

use crate::console::layout;
use crate::console::names::{name, time};
use crate::console::pages::filled;
use crate::console::web::{Console, PageResult, User, refused};
use crate::services::{ApiError, PageRequest, Rpc};

/// The list's filters.
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    tenant: Option<String>,
    state: Option<String>,
    after: Option<String>,
}

/// `GET /workloads`.
pub async fn list(
    State(state): State<Console>,
    user: User,
    Query(f): Query<Filters>,
) -> PageResult {
    let s = &state.services;
    let wanted = filled(&f.state).map(str::to_owned);
    let page = PageRequest {
        token: f.after.clone().unwrap_or_default(),
        size: 50,
    };
    let listed = s
        .list_workloads(
            s.admit(user.caller(), Rpc::ListWorkloads).await?,
            filled(&f.tenant).unwrap_or(""),
            move |w| {
                wanted
                    .as_deref()
                    .is_none_or(|st| w.state.to_string().starts_with(st))
            },
            &page,
        )
        .await?;
    let body = html! {
        form.filters method="get" action="/workloads" {
            @if user.caller().tenant.is_none() {
                label for="w-tenant" { "Tenant" input id="w-tenant" name="tenant" type="text" value=(filled(&f.tenant).unwrap_or("")); }
            }
            label for="w-state" { "State" select id="w-state" name="state" {
                option value="" { "any" }
                @for st in ["pending", "approved", "active", "completed", "canceled", "failed"] { option value=(st) selected[filled(&f.state) == Some(st)] { (st) } }
            } }
            button type="submit" { "Filter" }
        }
        table {
            thead { tr { th scope="col" { "Workload" } th scope="col" { "Tenant" } th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "State" } th scope="col" { "Sites" } } }
            tbody { @for w in &listed.workloads {
                @let sites: Vec<String> = listed.placements.iter().filter(|p| p.workload == w.id).flat_map(|p| p.assignments.iter().map(|a| a.site.to_string())).collect();
                tr { td { a href={ "/workloads/" (w.id) } { (w.id) } } td { (w.tenant) } td { (w.spec.name) } td { (name(&w.spec.kind)) } td { (w.state) } td { (sites.join(", ")) } }
            } }
        }
        @if !listed.next_page_token.is_empty() { p { a href={ "/workloads?after=" (listed.next_page_token) } rel="next" { "Next page" } } }
    };
    Ok(layout::page("Workloads", &user, "/workloads", body).into_response())
}

fn explanation(
    placement: Option<&Placement>,
    rejections: &std::collections::BTreeMap<meridian_common::model::RejectReason, u32>,
    text: &str,
) -> Markup {
    html! {
        @if let Some(p) = placement {
            h3 { "Score" }
            table.score {
                thead { tr { th scope="col" { "Part" } th.num scope="col" { "Value" } } }
                tbody {
                    tr { td { "total" } td.num { (format!("{:.3}", p.score.total)) } }
                    tr { td { "latency" } td.num { (format!("{:.3}", p.score.latency)) } }
                    tr { td { "data gravity" } td.num { (format!("{:.3}", p.score.data)) } }
                    tr { td { "price" } td.num { (format!("{:.3}", p.score.price)) } }
                    tr { td { "packing" } td.num { (format!("{:.3}", p.score.packing)) } }
                }
            }
            h3 { "Assignments" }
            table {
                thead { tr { th scope="col" { "Replica" } th scope="col" { "Site" } th scope="col" { "Server" } th scope="col" { "GPUs" } } }
                tbody { @for a in &p.assignments { tr { td { (a.replica) } td { a href={ "/sites/" (a.site) } { (a.site) } } td { (a.server) } td { (crate::console::pages::site::slot(&a.slot)) } } } }
            }
        }
        h3 { "Sites rejected, by reason" }
        @if rejections.is_empty() { p { "None." } } @else {
            table {
                thead { tr { th scope="col" { "Reason" } th.num scope="col" { "Sites" } } }
                tbody { @for (reason, n) in rejections { tr { td { (name(reason)) } td.num { (n) } } } }
            }
        }
        h3 { "Explanation" }
        pre.explanation id="explanation" { (text) }
    }
}

/// `GET /workloads/{id}`.
pub async fn page(State(state): State<Console>, user: User, Path(id): Path<String>) -> PageResult {
    let s = &state.services;
    let view = s
        .get_workload(s.admit(user.caller(), Rpc::GetWorkload).await?, &id)
        .await?;
    let w = &view.workload;
    let trail = if user.caller().may_call(Rpc::ListSites) {
        let call = s.admit(user.caller(), Rpc::ListSites).await?;
        s.audit_of(call, &format!("workload/{}", w.id)).await?
    } else {
        Vec::new()
    };
    let body = html! {
        table { tbody {
            tr { th scope="row" { "Tenant" } td { a href={ "/tenants/" (w.tenant) } { (w.tenant) } } }
            tr { th scope="row" { "Name" } td { (w.spec.name) } }
            tr { th scope="row" { "Kind" } td { (name(&w.spec.kind)) } }
            tr { th scope="row" { "Replicas" } td { (w.spec.replicas) } }
            tr { th scope="row" { "State" } td { (w.state) } }
            tr { th scope="row" { "Window" } td { @if let Some(win) = &w.spec.window { (win) } @else { "open-ended" } } }
        } }
        h2 { "History" }
        ol {
            li { (time(w.created_at)) ": created" }
            @for r in &trail { li { (time(Timestamp::from_millis(r.at))) ": " (r.action) " by " (r.actor) @if !r.detail.is_empty() { " (" (r.detail) ")" } } }
            @if let Some(p) = &view.placement { li { (time(p.decided_at)) ": placed on " (p.assignments.iter().map(|a| a.site.to_string()).collect::<Vec<_>>().join(", ")) } }
            li { "now: " (w.state) }
        }
        @if !view.endpoints.is_empty() {
            h2 { "Endpoints" }
            ul { @for e in &view.endpoints { li { (e.site) ": " (e.exposure.public_ip) ":" (e.exposure.public_port) @if e.applied { " (applied)" } @else { " (not yet applied)" } } } }
        }
        h2 { "Placement" }
        @match &view.placement {
            Some(p) => (explanation(Some(p), &p.rejections, &p.explanation)),
            None => p { "Not placed yet." },
        }
    };
    Ok(layout::page(&format!("Workload {}", w.id), &user, "/workloads", body).into_response())
}

const EXAMPLE: &str = "name: what-if\nkind: inference_endpoint\nreplicas: 1\nresources:\n  accelerator: { whole_gpus: { model: H100-80GB, count: 1 } }\n";

fn what_if_page(user: &User, tenant: &str, spec: &str, result: Option<Markup>) -> Markup {
    layout::page(
        "What-if",
        user,
        "/what-if",
        html! {
            p { "Dry-run a workload spec (YAML, as for " code { "meridian workload create -f" } "): nothing is stored or reserved." }
            form.stack method="post" action="/what-if" {
                (layout::csrf(user))
                @if user.caller().tenant.is_none() {
                    label for="wi-tenant" { "Tenant" input id="wi-tenant" name="tenant" type="text" required value=(tenant); }
                }
                label for="wi-spec" { "Spec" textarea id="wi-spec" name="spec" rows="14" spellcheck="false" { (spec) } }
                button type="submit" id="dry-run" { "Dry run" }
            }
            @if let Some(r) = result { section aria-labelledby="result" aria-live="polite" { h2 id="result" { "Result" } (r) } }
        },
    )
}

/// `GET /what-if`.
pub async fn what_if_form(State(state): State<Console>, user: User) -> PageResult {
    state.services.admit(user.caller(), Rpc::DryRun).await?;
    Ok(what_if_page(&user, "", EXAMPLE, None).into_response())
}

/// The what-if form.
#[derive(Debug, Deserialize)]
pub struct WhatIf {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    spec: String,
}

/// Largest spec accepted from the form.
const MAX_SPEC: usize = 64 * 1024;

/// `POST /what-if`: the explanation, or the error naming the field.
pub async fn what_if(
    State(state): State<Console>,
    user: User,
    Form(form): Form<WhatIf>,
) -> PageResult {
    user.check_csrf(&form.csrf)?;
    let s = &state.services;
    let call = s.admit(user.caller(), Rpc::DryRun).await?;
    let parsed: Result<WorkloadSpec, ApiError> = if form.spec.len() > MAX_SPEC {
        Err(ApiError::invalid(
            "spec",
            format!("is longer than {MAX_SPEC} bytes"),
        ))
    } else {
        meridian_common::yaml::parse(&form.spec, &[]).map_err(|m| ApiError::invalid("spec", m))
    };
    let result = match parsed {
        Ok(spec) => s.dry_run(call, form.tenant.trim(), spec).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(decision) => {
            let r = html! {
                @if let Some(p) = decision.placement() { p.ok { "Would place on " (p.assignments.iter().map(|a| a.site.to_string()).collect::<Vec<_>>().join(", ")) "." } }
                @else { p.error { "Would not place." } }
                (explanation(decision.placement(), decision.rejections(), decision.explanation()))
            };
            Ok(what_if_page(&user, form.tenant.trim(), &form.spec, Some(r)).into_response())
        }
        Err(
            e
            @ (ApiError::Invalid(_) | ApiError::NotFound { .. } | ApiError::FailedPrecondition(_)),
        ) => {
            let status = crate::console::web::status_of(&e);
            let r = html! { p.error role="alert" id="what-if-error" { (e.to_string()) } };
            Ok((
                status,
                what_if_page(&user, form.tenant.trim(), &form.spec, Some(r)),
            )
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// The calendar's filters.
#[derive(Debug, Default, Deserialize)]
pub struct CalendarFilters {
    site: Option<String>,
    tenant: Option<String>,
    days: Option<u32>,
}

/// `GET /reservations`: reservations as bars on a time axis from a day ago to `days` ahead.
pub async fn calendar(
    State(state): State<Console>,
    user: User,
    Query(f): Query<CalendarFilters>,
) -> PageResult {
    let s = &state.services;
    let call = s.admit(user.caller(), Rpc::ListWorkloads).await?;
    let site = match filled(&f.site) {
        Some(text) => match SiteId::parse(text) {
            Ok(id) => Some(id),
            Err(e) => {
                return Err(refused(
                    call,
                    "reservations",
                    ApiError::invalid("site", e.to_string()),
                )
                .await);
            }
        },
        None => None,
    };
    let days = f.days.unwrap_or(7).clamp(1, 60);
    let mut placements = s.reservations(call, site.as_ref()).await?;
    if let Some(t) = filled(&f.tenant) {
        placements.retain(|p| p.tenant.as_str() == t);
    }
    let now = s.now().as_millis();
    let (from, to) = (now - 86_400_000, now + i64::from(days) * 86_400_000);
    placements.retain(|p| {
        p.window
            .is_none_or(|w| w.end().as_millis() > from && w.start().as_millis() < to)
    });
    placements.sort_by_key(|p| (p.window.map(|w| w.start()), p.workload.clone()));
    placements.truncate(500);
    let (left, width, row) = (220.0_f64, 840.0_f64, 16.0_f64);
    let x = |t: i64| left + width * ((t.clamp(from, to) - from) as f64 / (to - from) as f64);
    let height = 30.0 + row * placements.len() as f64;
    let body = html! {
        form.filters method="get" action="/reservations" {
            label for="c-site" { "Site" input id="c-site" name="site" type="text" value=(filled(&f.site).unwrap_or("")); }
            @if user.caller().tenant.is_none() { label for="c-tenant" { "Tenant" input id="c-tenant" name="tenant" type="text" value=(filled(&f.tenant).unwrap_or("")); } }
            label for="c-days" { "Days ahead" input id="c-days" name="days" type="number" min="1" max="60" value=(days); }
            button type="submit" { "Show" }
        }
        p { (placements.len()) " reservations from " (time(Timestamp::from_millis(from))) " to " (time(Timestamp::from_millis(to))) "." }
        svg.calendar viewBox={ "0 0 1080 " (height) } role="img" aria-label="Reservations on a time axis; the table below lists them" xmlns="http://www.w3.org/2000/svg" {
            @for d in 0..=(days + 1) {
                @let t = from + i64::from(d) * 86_400_000;
                line x1=(x(t)) x2=(x(t)) y1="0" y2=(height) stroke="#c8c8c8" {}
                @if d <= days { text x=(x(t) + 2.0) y="12" { (match i64::from(d) - 1 { -1 => "-1d".to_owned(), 0 => "now".to_owned(), n => format!("+{n}d") }) } }
            }
            line x1=(x(now)) x2=(x(now)) y1="0" y2=(height) stroke="#b3261e" {}
            @for (i, p) in placements.iter().enumerate() {
                @let y = 20.0 + row * i as f64;
                @let (s0, e0) = p.window.map_or((from, to), |w| (w.start().as_millis(), w.end().as_millis()));
                text x="2" y=(y + 11.0) { (p.tenant) "/" (p.workload) }
                rect.bar x=(x(s0)) y=(y) width=((x(e0) - x(s0)).max(1.0)) height=(row - 4.0) {}
            }
        }
        table {
            thead { tr { th scope="col" { "Workload" } th scope="col" { "Tenant" } th scope="col" { "Sites" } th scope="col" { "Window" } } }
            tbody { @for p in &placements { tr {
                td { a href={ "/workloads/" (p.workload) } { (p.workload) } } td { (p.tenant) }
                td { (p.assignments.iter().map(|a| a.site.to_string()).collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>().join(", ")) }
                td { @if let Some(w) = &p.window { (w) } @else { "open-ended" } }
            } } }
        }
    };
    Ok(layout::page("Reservations", &user, "/reservations", body).into_response())
}
