//! One site: servers, GPUs and MIG layout, DPUs, the intent's segments, exposures and volumes,
//! desired vs applied generation, server actions, bootstrap tokens and recent reports; and the
//! operator's actions on it, each shown only to a role that may take it.

use std::time::Duration;

use axum::extract::{Form, Path, State};
use axum::response::IntoResponse;
use maud::{Markup, html};
use meridian_common::ids::Timestamp;
use meridian_common::model::ReportBody;
use meridian_common::model::{GpuSlot, MigConfig};
use meridian_proto::v1 as proto;
use serde::Deserialize;

use crate::console::layout;
use crate::console::names::{name, time};
use crate::console::web::{Console, PageError, PageResult, User, refused};
use crate::services::{ApiError, PageRequest, Rpc};

/// Reports shown.
const REPORTS: usize = 25;

fn mig(config: &MigConfig) -> String {
    match config {
        MigConfig::Disabled => "off".to_owned(),
        MigConfig::Enabled { instances } if instances.is_empty() => "on, no instances".to_owned(),
        MigConfig::Enabled { instances } => instances
            .iter()
            .map(|i| format!("{}@{}", i.profile, i.placement))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// A server's GPUs in words: count by model, then any that are not healthy.
fn gpus(gpus: &[meridian_common::model::Gpu]) -> String {
    if gpus.is_empty() {
        return "-".to_owned();
    }
    let mut by_model: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for g in gpus {
        *by_model.entry(g.model.to_string()).or_default() += 1;
    }
    let mut text: Vec<String> = by_model.iter().map(|(m, n)| format!("{n} × {m}")).collect();
    for g in gpus.iter().filter(|g| name(&g.health) != "healthy") {
        text.push(format!("GPU {} {}", g.index, name(&g.health)));
    }
    text.join(", ")
}

/// The MIG layout of a server's GPUs: `off` when no GPU has MIG on.
fn migs(gpus: &[meridian_common::model::Gpu]) -> String {
    let on: Vec<String> = gpus
        .iter()
        .filter(|g| !matches!(g.mig, MigConfig::Disabled))
        .map(|g| format!("GPU {}: {}", g.index, mig(&g.mig)))
        .collect();
    if on.is_empty() {
        "off".to_owned()
    } else {
        on.join("; ")
    }
}

/// A GPU share in words.
pub fn slot(slot: &GpuSlot) -> String {
    match slot {
        GpuSlot::None => "none".to_owned(),
        GpuSlot::WholeGpus { indices } => format!(
            "GPU {}",
            indices
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        GpuSlot::Mig {
            gpu_index,
            profile,
            placement,
        } => format!("GPU {gpu_index} MIG {profile}@{placement}"),
    }
}

fn report_line(body: &ReportBody) -> (String, String) {
    match body {
        ReportBody::Event {
            severity,
            resource,
            message,
        } => (
            format!("event ({})", name(severity)),
            format!("{resource}: {message}"),
        ),
        ReportBody::ServerState { server, state } => {
            ("server state".into(), format!("{server}: {}", name(state)))
        }
        ReportBody::Inventory { servers, pending } => (
            "inventory".into(),
            format!(
                "{} servers inspected, {} not yet",
                servers.len(),
                pending.len()
            ),
        ),
        ReportBody::AllocationState {
            workload,
            server,
            state,
        } => (
            "allocation".into(),
            format!("{workload} on {server}: {}", name(state)),
        ),
        ReportBody::Rtt { region, rtt_ms } => ("rtt".into(), format!("{region}: {rtt_ms} ms")),
        ReportBody::ServerAction {
            request,
            server,
            phase,
            detail,
        } => (
            "server action".into(),
            format!("#{request} {server}: {} {detail}", name(phase)),
        ),
        ReportBody::Volume {
            tenant,
            name: volume,
            size_mib,
            ready,
            detail,
        } => (
            "volume".into(),
            format!(
                "{tenant}/{volume}: {size_mib} MiB, {} {detail}",
                if *ready { "ready" } else { "not ready" }
            ),
        ),
        ReportBody::Metrics {
            gpu_utilisation_pct,
            period: Some(p),
            ..
        } => (
            "utilisation".into(),
            format!(
                "{gpu_utilisation_pct:.1} % busy over {} s, {} GPUs and MIG devices",
                p.length_ms / 1000,
                p.gpus.len()
            ),
        ),
        ReportBody::Egress { tenants, .. } => (
            "egress".into(),
            tenants
                .iter()
                .map(|(t, b)| format!("{t}: {b} B"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        other => (name(other), String::new()),
    }
}

/// `GET /sites/{id}`.
pub async fn page(State(state): State<Console>, user: User, Path(id): Path<String>) -> PageResult {
    render(&state, &user, &id, None)
        .await
        .map(IntoResponse::into_response)
}

async fn render(
    state: &Console,
    user: &User,
    id: &str,
    notice: Option<Markup>,
) -> Result<Markup, PageError> {
    let s = &state.services;
    let caller = user.caller();
    let site = s.get_site(s.admit(caller, Rpc::GetSite).await?, id).await?;
    let drift = s
        .site_drift(s.admit(caller, Rpc::GetSiteDrift).await?, id)
        .await?;
    let (servers, _) = s
        .list_servers(
            s.admit(caller, Rpc::ListServers).await?,
            id,
            |_| true,
            &PageRequest {
                token: String::new(),
                size: 1000,
            },
        )
        .await?;
    let intent = s
        .site_intent(s.admit(caller, Rpc::GetSiteDrift).await?, &site.id)
        .await?;
    let reports = s
        .site_reports(s.admit(caller, Rpc::GetSiteDrift).await?, &site.id, REPORTS)
        .await?;
    let actions = s
        .list_server_actions(s.admit(caller, Rpc::ListServerActions).await?, id, "")
        .await?;
    let tokens = if caller.may_call(Rpc::ListBootstrapTokens) {
        Some(
            s.list_bootstrap_tokens(
                s.admit(caller, Rpc::ListBootstrapTokens).await?,
                id,
                &PageRequest::default(),
            )
            .await?
            .0,
        )
    } else {
        None
    };
    let now = s.now();
    let body = html! {
        @if let Some(n) = notice { (n) }
        section aria-labelledby="summary" {
            h2 id="summary" { "Summary" }
            table {
                tbody {
                    tr { th scope="row" { "Name" } td { (site.name) } }
                    tr { th scope="row" { "State" } td class={ "s-" (name(&site.state)) } data-site-state=(site.id) { (name(&site.state)) } }
                    tr { th scope="row" { "Tier" } td { (name(&site.tier)) } }
                    tr { th scope="row" { "Country" } td { (site.country) } }
                    tr { th scope="row" { "Location" } td { (format!("{:.3}, {:.3}", site.location.lat, site.location.lon)) } }
                    tr { th scope="row" { "Generation desired / acknowledged / applied" } td { (drift.desired) " / " (drift.acknowledged) " / " (drift.applied) @if drift.desired > drift.applied { " (drift)" } } }
                    @if let Some(reason) = &drift.failure_reason { tr { th scope="row" { "Last failure" } td.error { (reason) } } }
                    tr { th scope="row" { "Last seen" } td { (time(drift.last_seen)) } }
                    tr { th scope="row" { "Channel RTT" } td { @if drift.path_rtt_us > 0 { (format!("{:.1} ms", drift.path_rtt_us as f64 / 1000.0)) } @else { "-" } } }
                    tr { th scope="row" { "Storage array" } td { @if site.storage_mib > 0 { (format!("{:.1} TiB", site.storage_mib as f64 / 1_048_576.0)) } @else { "none" } } }
                }
            }
        }
        section aria-labelledby="servers" {
            h2 id="servers" { "Servers (" (servers.len()) ")" }
            table {
                thead { tr { th scope="col" { "Server" } th scope="col" { "State" } th scope="col" { "Pool" } th scope="col" { "GPUs" } th scope="col" { "MIG" } th scope="col" { "DPU" } th scope="col" { "BMC" } } }
                tbody {
                    @for srv in &servers {
                        tr {
                            td { (srv.id) } td { (name(&srv.state)) } td { (srv.pool.as_ref().map(|p| p.to_string()).unwrap_or_else(|| "-".into())) }
                            td { (gpus(&srv.gpus)) }
                            td { (migs(&srv.gpus)) }
                            td { @if let Some(d) = &srv.dpu { (d.model) " " (d.serial) " (" (name(&d.mode)) ")" } @else { "-" } }
                            td { (srv.bmc.url) " (" (name(&srv.bmc.vendor)) ")" }
                        }
                    }
                }
            }
        }
        @if let Some(intent) = &intent {
            section aria-labelledby="intent" {
                h2 id="intent" { "Intent (generation " (intent.generation) ")" }
                h3 { "Tenant segments (VXLAN, on the site's switches and hosts)" }
                table {
                    thead { tr { th scope="col" { "Tenant" } th.num scope="col" { "VNI" } th scope="col" { "Subnet" } th scope="col" { "Gateway" } } }
                    tbody { @for n in &intent.networks { tr { td { (n.tenant) } td.num { (n.vni) } td { (n.subnet) } td { (n.gateway) } } } }
                }
                h3 { "Allocations" }
                table {
                    thead { tr { th scope="col" { "Workload" } th scope="col" { "Tenant" } th scope="col" { "Server" } th scope="col" { "GPUs" } } }
                    tbody { @for a in &intent.allocations { tr { td { (a.workload) } td { (a.tenant) } td { (a.server) } td { (slot(&a.slot)) } } } }
                }
                h3 { "Gateway exposures" }
                table {
                    thead { tr { th scope="col" { "Tenant" } th scope="col" { "Workload" } th scope="col" { "Public" } th scope="col" { "Backend" } } }
                    tbody { @for e in &intent.exposures { tr { td { (e.tenant) } td { (e.workload) } td { (e.public_ip) ":" (e.public_port) "/" (name(&e.protocol)) } td { (e.backend_ip) ":" (e.backend_port) } } } }
                }
                h3 { "Volumes" }
                table {
                    thead { tr { th scope="col" { "Tenant" } th scope="col" { "Volume" } th.num scope="col" { "Size (GiB)" } } }
                    tbody { @for v in &intent.volumes { tr { td { (v.tenant) } td { (v.name) } td.num { (v.size_mib / 1024) } } } }
                }
            }
        }
        section aria-labelledby="actions" {
            h2 id="actions" { "Server actions" }
            table {
                thead { tr { th scope="col" { "Request" } th scope="col" { "Server" } th scope="col" { "Operation" } th scope="col" { "Phase" } th scope="col" { "By" } th scope="col" { "Detail" } } }
                tbody {
                    @for a in &actions {
                        tr {
                            td { "#" (a.request) } td { (a.server) }
                            td { (proto::ServerOp::try_from(a.op).map(|o| o.as_str_name()).unwrap_or("?")) }
                            td { (proto::ActionPhase::try_from(a.phase).map(|p| p.as_str_name()).unwrap_or("?")) }
                            td { (a.requested_by) } td { (a.detail) }
                        }
                    }
                }
            }
            @if caller.may_call(Rpc::RequestServerAction) && !servers.is_empty() {
                form.filters method="post" action={ "/sites/" (site.id) "/server-actions" } {
                    (layout::csrf(user))
                    label for="sa-server" { "Server" select id="sa-server" name="server" { @for srv in &servers { option value=(srv.id) { (srv.id) } } } }
                    label for="sa-op" { "Operation" select id="sa-op" name="op" {
                        @for (v, l) in [("drain", "Drain"), ("undrain", "Undrain"), ("reboot", "Reboot"), ("power-cycle", "Power cycle"), ("reprovision", "Reprovision")] { option value=(v) { (l) } }
                    } }
                    button type="submit" id="request-action" { "Request" }
                }
            }
        }
        @if let Some(tokens) = &tokens {
            section aria-labelledby="bootstrap" {
                h2 id="bootstrap" { "Bootstrap tokens" }
                table {
                    thead { tr { th scope="col" { "Token" } th scope="col" { "Created" } th scope="col" { "Expires" } th scope="col" { "Used" } th scope="col" { "By" } } }
                    tbody { @for t in tokens { tr {
                        td { (t.id) @if t.revoked { " (revoked)" } }
                        td { (time(Timestamp::from_millis(t.created_at))) }
                        td { (time(Timestamp::from_millis(t.expires_at))) @if t.expires_at <= now.as_millis() { " (expired)" } }
                        td { (time(Timestamp::from_millis(t.used_at))) } td { (t.created_by) }
                    } } }
                }
                @if caller.may_call(Rpc::CreateBootstrapToken) {
                    form.filters method="post" action={ "/sites/" (site.id) "/bootstrap-tokens" } {
                        (layout::csrf(user))
                        label for="bt-ttl" { "Valid for (hours)" input id="bt-ttl" name="ttl_hours" type="number" min="1" max="720" value="24"; }
                        button type="submit" id="create-token" { "Create bootstrap token" }
                    }
                }
            }
        }
        @if caller.may_call(Rpc::RevokeSite) {
            section aria-labelledby="revoke" {
                h2 id="revoke" { "Revoke" }
                p { "Revoking ends the site's certificate and bootstrap tokens: its agent is refused until it is bootstrapped again." }
                form.inline method="post" action={ "/sites/" (site.id) "/revoke" } {
                    (layout::csrf(user))
                    button type="submit" id="revoke-site" { "Revoke site " (site.id) }
                }
            }
        }
        section aria-labelledby="reports" {
            h2 id="reports" { "Recent reports" }
            table {
                thead { tr { th scope="col" { "Seq" } th scope="col" { "At" } th.num scope="col" { "Generation" } th scope="col" { "Kind" } th scope="col" { "What" } } }
                tbody { @for r in &reports { @let (kind, what) = report_line(&r.body); tr { td { (r.sequence) } td { (time(r.at)) } td.num { (r.generation) } td { (kind) } td { (what) } } } }
            }
        }
    };
    Ok(layout::page(
        &format!("Site {}", site.id),
        user,
        "/fleet",
        body,
    ))
}

/// The token form.
#[derive(Debug, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    ttl_hours: String,
}

/// `POST /sites/{id}/bootstrap-tokens`: a new token; its bootstrap file is shown once.
pub async fn create_token(
    State(state): State<Console>,
    user: User,
    Path(id): Path<String>,
    Form(form): Form<TokenForm>,
) -> PageResult {
    user.check_csrf(&form.csrf)?;
    let s = &state.services;
    let call = s.admit(user.caller(), Rpc::CreateBootstrapToken).await?;
    let ttl = match form.ttl_hours.trim() {
        "" => None,
        t => match t.parse::<u64>() {
            Ok(h) if (1..=720).contains(&h) => Some(Duration::from_secs(h * 3600)),
            _ => {
                return Err(refused(
                    call,
                    &format!("site/{id}"),
                    ApiError::invalid("ttl_hours", "must be a whole number of hours, 1 to 720"),
                )
                .await);
            }
        },
    };
    let new = s.create_bootstrap_token(call, &id, ttl).await?;
    let notice = html! {
        div.notice role="status" {
            p { "Bootstrap token " strong { (new.token.token.id) } " created. Copy the bootstrap file now: its secret is not shown again." }
            pre.secret id="bootstrap-file" { (new.file.render()) }
        }
    };
    Ok(render(&state, &user, &id, Some(notice))
        .await?
        .into_response())
}

/// A form with only its CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /sites/{id}/revoke`.
pub async fn revoke(
    State(state): State<Console>,
    user: User,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    user.check_csrf(&form.csrf)?;
    let s = &state.services;
    let (site, at) = s
        .revoke_site(s.admit(user.caller(), Rpc::RevokeSite).await?, &id)
        .await?;
    let notice =
        html! { p.notice role="status" { "Site " (site.id) " revoked at " (time(at)) "." } };
    Ok(render(&state, &user, &id, Some(notice))
        .await?
        .into_response())
}

/// The server action form.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    server: String,
    #[serde(default)]
    op: String,
}

/// `POST /sites/{id}/server-actions`.
pub async fn server_action(
    State(state): State<Console>,
    user: User,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> PageResult {
    user.check_csrf(&form.csrf)?;
    let s = &state.services;
    let call = s.admit(user.caller(), Rpc::RequestServerAction).await?;
    let op = match form.op.as_str() {
        "drain" => proto::ServerOp::Drain,
        "undrain" => proto::ServerOp::Undrain,
        "reboot" => proto::ServerOp::Reboot,
        "power-cycle" => proto::ServerOp::PowerCycle,
        "reprovision" => proto::ServerOp::Reprovision,
        _ => {
            let e = ApiError::invalid(
                "op",
                "must be drain, undrain, reboot, power-cycle or reprovision",
            );
            return Err(refused(call, &format!("server/{id}/{}", form.server), e).await);
        }
    };
    let record = s
        .request_server_action(call, &id, &form.server, op as i32)
        .await?;
    let notice = html! { p.notice role="status" { "Request #" (record.request) " (" (form.op) " " (record.server) ") accepted." } };
    Ok(render(&state, &user, &id, Some(notice))
        .await?
        .into_response())
}
