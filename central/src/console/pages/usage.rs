//! Usage: what tenants used, per tenant and per site over time, from metering
//! ([`crate::metering`]): GPU-hours (whole GPUs) per hour by tenant (or by site with
//! `?by=site`), totals per tenant and per site for every metered resource, and which hours
//! are not final yet (a site's reports have not reached their end). A tenant's users see
//! their own tenant's usage only, like the API.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use maud::{Markup, PreEscaped, html};
use meridian_common::ids::Timestamp;
use serde::Deserialize;

use crate::console::chart::{self, Line};
use crate::console::layout;
use crate::console::names::time;
use crate::console::pages::filled;
use crate::console::web::{Console, PageResult, User};
use crate::metering::{PERIOD_MS, Resource, UsageRow};
use crate::services::Rpc;

/// Ranges offered, hours.
const RANGES: [i64; 3] = [24, 48, 168];

/// Series charted; the rest is summed as "other".
const SERIES: usize = 7;

/// The page's filters.
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    tenant: Option<String>,
    hours: Option<i64>,
    by: Option<String>,
}

/// An amount in the page's unit of its resource: hours (GiB-hours are hours already), egress
/// in GiB.
fn hours_of(r: &UsageRow) -> f64 {
    match r.resource {
        Resource::Storage => r.amount,
        Resource::Egress => r.amount / (1u64 << 30) as f64,
        _ => r.amount / 3600.0,
    }
}

fn unit(resource: Resource) -> &'static str {
    match resource {
        Resource::Gpu => "GPU-hours",
        Resource::MigSlice => "slice-hours",
        Resource::CpuCore => "core-hours",
        Resource::Storage => "GiB-hours",
        Resource::Egress => "egress GiB",
    }
}

/// Totals per key and resource, largest GPU use first.
fn totals_by(rows: &[UsageRow], key: impl Fn(&UsageRow) -> &str) -> Vec<(String, [f64; 5])> {
    let mut out: BTreeMap<String, [f64; 5]> = BTreeMap::new();
    for r in rows {
        let i = Resource::ALL
            .iter()
            .position(|x| *x == r.resource)
            .unwrap_or(0);
        out.entry(key(r).to_owned()).or_default()[i] += hours_of(r);
    }
    let mut v: Vec<_> = out.into_iter().collect();
    v.sort_by(|a, b| b.1[0].total_cmp(&a.1[0]).then_with(|| a.0.cmp(&b.0)));
    v
}

fn totals_table(id: &str, caption: &str, what: &str, rows: &[(String, [f64; 5])]) -> Markup {
    html! {
        section aria-labelledby=(id) {
            h2 id=(id) { (caption) }
            table {
                thead { tr {
                    th scope="col" { (what) }
                    @for r in Resource::ALL { th.num scope="col" { (unit(r)) } }
                } }
                tbody { @for (name, amounts) in rows { tr {
                    td { (name) }
                    @for a in amounts { td.num { (format!("{a:.2}")) } }
                } } }
            }
        }
    }
}

/// GPU-hours per hour of the range, per series (the biggest `SERIES`, the rest as "other").
fn lines(rows: &[UsageRow], from: i64, hours: i64, key: impl Fn(&UsageRow) -> &str) -> Vec<Line> {
    let mut per: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.resource == Resource::Gpu) {
        let h = ((r.period_start_ms - from) / PERIOD_MS) as usize;
        let v = per
            .entry(key(r).to_owned())
            .or_insert_with(|| vec![0.0; hours as usize]);
        if let Some(slot) = v.get_mut(h) {
            *slot += hours_of(r);
        }
    }
    let mut ranked: Vec<(String, Vec<f64>)> = per.into_iter().collect();
    ranked.sort_by(|a, b| {
        let sum = |v: &[f64]| v.iter().sum::<f64>();
        sum(&b.1).total_cmp(&sum(&a.1)).then_with(|| a.0.cmp(&b.0))
    });
    let mut out: Vec<Line> = Vec::new();
    let mut other = vec![0.0; hours as usize];
    for (i, (name, values)) in ranked.into_iter().enumerate() {
        if i < SERIES {
            out.push(Line {
                label: name,
                colour: chart::PALETTE[i],
                values: values.into_iter().map(Some).collect(),
            });
        } else {
            for (o, v) in other.iter_mut().zip(values) {
                *o += v;
            }
        }
    }
    if other.iter().any(|v| *v > 0.0) {
        out.push(Line {
            label: "other".into(),
            colour: chart::PALETTE[SERIES],
            values: other.into_iter().map(Some).collect(),
        });
    }
    out
}

/// Unix ms as RFC 3339 (UTC), as the CLI takes it.
fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// `GET /usage`.
pub async fn page(
    State(state): State<Console>,
    user: User,
    Query(f): Query<Filters>,
) -> PageResult {
    let s = &state.services;
    let hours = f.hours.filter(|h| RANGES.contains(h)).unwrap_or(RANGES[0]);
    let by_site = f.by.as_deref() == Some("site");
    let tenant = filled(&f.tenant).unwrap_or("");
    let now = s.now().as_millis();
    let to = crate::metering::periods::period_of(now) + PERIOD_MS;
    let from = to - hours * PERIOD_MS;
    let export = s
        .usage(
            s.admit(user.caller(), Rpc::ExportUsage).await?,
            tenant,
            from,
            to,
        )
        .await?;
    let series = if by_site {
        lines(&export.rows, from, hours, |r| &r.site)
    } else {
        lines(&export.rows, from, hours, |r| &r.tenant)
    };
    let svg = chart::hourly(&series, "GPU-hours per hour", 1.0);
    let open: Vec<_> = export.periods.iter().filter(|p| !p.is_final()).collect();
    let mut behind: Vec<&str> = open
        .iter()
        .flat_map(|p| p.sites_behind.iter().map(String::as_str))
        .collect();
    behind.sort_unstable();
    behind.dedup();
    let by_tenant = totals_by(&export.rows, |r| &r.tenant);
    let by_site_totals = totals_by(&export.rows, |r| &r.site);
    let provider = user.caller().tenant.is_none();
    let body = html! {
        form.filters method="get" action="/usage" {
            @if provider {
                label for="u-tenant" { "Tenant (empty: all)" input id="u-tenant" name="tenant" type="text" value=(tenant); }
            }
            label for="u-hours" { "Range" select id="u-hours" name="hours" {
                @for h in RANGES { option value=(h) selected[h == hours] { "last " (h) " h" } }
            } }
            label for="u-by" { "Chart by" select id="u-by" name="by" {
                option value="tenant" selected[!by_site] { "tenant" }
                option value="site" selected[by_site] { "site" }
            } }
            button type="submit" { "Show" }
        }
        @if open.is_empty() {
            p.ok role="status" id="finality" { "Every hour of the range is final." }
        } @else {
            p.warn role="status" id="finality" {
                (open.len()) " of " (export.periods.len()) " hours not final yet, from "
                (time(Timestamp::from_millis(open[0].start_ms))) ": waiting for reports from "
                (behind.join(", ")) "."
            }
        }
        figure {
            (PreEscaped(svg))
            figcaption { "Whole-GPU hours per hour by " (if by_site { "site" } else { "tenant" }) ", " (time(Timestamp::from_millis(from))) " to now." }
        }
        (totals_table("by-tenant", "Totals by tenant", "Tenant", &by_tenant))
        (totals_table("by-site", "Totals by site", "Site", &by_site_totals))
        p { "Billing export of the same figures: " code { "meridian usage export --from "
            (rfc3339(from)) " --to " (rfc3339(to)) " --format csv" } " (docs/usage.md)." }
    };
    Ok(layout::page("Usage", &user, "/usage", body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(tenant: &str, site: &str, hour: i64, resource: Resource, amount: f64) -> UsageRow {
        UsageRow {
            period_start_ms: hour * PERIOD_MS,
            tenant: tenant.into(),
            workload: "wl".into(),
            site: site.into(),
            resource,
            detail: String::new(),
            amount,
            final_: true,
        }
    }

    #[test]
    fn totals_and_lines_sum_per_key_in_hours() {
        let rows = [
            row("acme", "a", 0, Resource::Gpu, 7200.0),
            row("acme", "b", 1, Resource::Gpu, 3600.0),
            row("globex", "a", 1, Resource::Storage, 10.0),
        ];
        let t = totals_by(&rows, |r| &r.tenant);
        assert_eq!(t[0], ("acme".to_owned(), [3.0, 0.0, 0.0, 0.0, 0.0]));
        assert_eq!(t[1], ("globex".to_owned(), [0.0, 0.0, 0.0, 10.0, 0.0]));
        let l = lines(&rows, 0, 2, |r| &r.tenant);
        assert_eq!(l.len(), 1, "storage is not charted");
        assert_eq!(l[0].values, vec![Some(2.0), Some(1.0)]);
        let l = lines(&rows, 0, 2, |r| &r.site);
        assert_eq!(l[0].label, "a");
    }
}
