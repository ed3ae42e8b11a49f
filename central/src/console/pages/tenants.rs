//! Tenants: the list, and one tenant's quotas and usage, residency, network, users and
//! workloads. A tenant's users see only their own tenant; another's is "not found".

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use maud::html;
use serde::Deserialize;

use crate::console::layout;
use crate::console::names::{name, time};
use crate::console::web::{Console, PageResult, User};
use crate::services::{PageRequest, Rpc};

/// A list's continuation.
#[derive(Debug, Default, Deserialize)]
pub struct After {
    after: Option<String>,
}

/// `GET /tenants`.
pub async fn list(State(state): State<Console>, user: User, Query(q): Query<After>) -> PageResult {
    let s = &state.services;
    let page = PageRequest {
        token: q.after.unwrap_or_default(),
        size: 50,
    };
    let (tenants, next) = s
        .list_tenants(s.admit(user.caller(), Rpc::ListTenants).await?, &page)
        .await?;
    let body = html! {
        table {
            thead { tr { th scope="col" { "Tenant" } th scope="col" { "Name" } th scope="col" { "Residency" } th.num scope="col" { "Max priority" } } }
            tbody { @for t in &tenants { tr {
                td { a href={ "/tenants/" (t.id) } { (t.id) } } td { (t.name) }
                td { @if t.residency.terms.is_empty() { "anywhere" } @else { (t.residency.terms.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")) } }
                td.num { (t.max_priority) }
            } } }
        }
        @if !next.is_empty() { p { a href={ "/tenants?after=" (next) } rel="next" { "Next page" } } }
    };
    Ok(layout::page("Tenants", &user, "/tenants", body).into_response())
}

/// `GET /tenants/{id}`.
pub async fn page(State(state): State<Console>, user: User, Path(id): Path<String>) -> PageResult {
    let s = &state.services;
    let caller = user.caller();
    let tenant = s
        .get_tenant(s.admit(caller, Rpc::GetTenant).await?, &id)
        .await?;
    let usage = s
        .quota_usage(s.admit(caller, Rpc::GetQuotaUsage).await?, &id)
        .await?;
    let users = if caller.may_call(Rpc::ListUsers) {
        Some(
            s.list_users(
                s.admit(caller, Rpc::ListUsers).await?,
                &id,
                &PageRequest {
                    token: String::new(),
                    size: 200,
                },
            )
            .await?
            .0,
        )
    } else {
        None
    };
    let workloads = s
        .list_workloads(
            s.admit(caller, Rpc::ListWorkloads).await?,
            &id,
            |_| true,
            &PageRequest {
                token: String::new(),
                size: 200,
            },
        )
        .await?;
    let (l, u) = (&usage.limits, &usage.used);
    let body = html! {
        section aria-labelledby="quotas" {
            h2 id="quotas" { "Quotas and usage" }
            table {
                thead { tr { th scope="col" { "Resource" } th.num scope="col" { "Used" } th.num scope="col" { "Limit" } } }
                tbody {
                    @for (model, limit) in &l.gpus_per_model { tr { td { "GPUs " (model) } td.num { (u.gpus_per_model.get(model).copied().unwrap_or(0)) } td.num { (limit) } } }
                    tr { td { "MIG slices" } td.num { (u.mig_slices) } td.num { (l.mig_slices) } }
                    tr { td { "Concurrent reservations" } td.num { (u.concurrent_reservations) } td.num { (l.concurrent_reservations) } }
                    tr { td { "Sites" } td.num { (u.sites) } td.num { (l.sites) } }
                    tr { td { "Storage (GiB)" } td.num { (u.storage_mib / 1024) } td.num { (l.storage_mib / 1024) } }
                }
            }
        }
        section aria-labelledby="policy" {
            h2 id="policy" { "Residency and network" }
            p { "Residency: " @if tenant.residency.terms.is_empty() { "anywhere" } @else { (tenant.residency.terms.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")) } }
            p { "Network: " @if let Some(n) = &tenant.network { "VXLAN VNI " (n.vni) ", routing table " (n.table) ", supernet " (n.supernet) } @else { "not yet assigned (given with its first workload)" } }
        }
        @if let Some(users) = &users {
            section aria-labelledby="users" {
                h2 id="users" { "Users" }
                table {
                    thead { tr { th scope="col" { "User" } th scope="col" { "Role" } th scope="col" { "Name" } } }
                    tbody { @for usr in users { tr { td { (usr.id) } td { (meridian_common::role::Role::try_from(usr.role).map(|r| r.to_string()).unwrap_or_default()) } td { (usr.display_name) } } } }
                }
            }
        }
        section aria-labelledby="workloads" {
            h2 id="workloads" { "Workloads" }
            table {
                thead { tr { th scope="col" { "Workload" } th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "State" } th scope="col" { "Created" } } }
                tbody { @for w in &workloads.workloads { tr {
                    td { a href={ "/workloads/" (w.id) } { (w.id) } } td { (w.spec.name) } td { (name(&w.spec.kind)) } td { (w.state) } td { (time(w.created_at)) }
                } } }
            }
        }
    };
    Ok(layout::page(&format!("Tenant {}", tenant.id), &user, "/tenants", body).into_response())
}
