//! The audit log: searchable, filterable by outcome, newest first, with the hash chain's
//! verification. Provider users only.

use axum::extract::{Query, RawQuery, State};
use axum::response::IntoResponse;
use maud::html;
use meridian_common::ids::Timestamp;
use serde::Deserialize;

use crate::audit::Verdict;
use crate::console::layout;
use crate::console::names::time;
use crate::console::pages::filled;
use crate::console::web::{
    Console, PageResult, User, page_bounds, page_number, query_without_page,
};
use crate::services::Rpc;

const ROWS: usize = 50;

/// `success`, `denied` or `failed`.
fn outcome_name(result: i32) -> String {
    meridian_proto::v1::AuditResult::try_from(result)
        .map(|r| {
            r.as_str_name()
                .trim_start_matches("AUDIT_RESULT_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// The audit page's filters.
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    q: Option<String>,
    outcome: Option<String>,
    page: Option<usize>,
}

/// `GET /audit`.
pub async fn page(
    State(state): State<Console>,
    user: User,
    Query(f): Query<Filters>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let s = &state.services;
    let (records, verdict) = s
        .audit_log(s.admit(user.caller(), Rpc::ListSites).await?)
        .await?;
    let q = filled(&f.q).map(str::to_lowercase);
    let outcome = filled(&f.outcome);
    let rows: Vec<_> = records
        .iter()
        .filter(|r| outcome.is_none_or(|o| outcome_name(r.result) == o))
        .filter(|r| {
            q.as_deref().is_none_or(|q| {
                [&r.actor, &r.action, &r.object, &r.detail]
                    .iter()
                    .any(|field| field.to_lowercase().contains(q))
            })
        })
        .collect();
    let page = page_number(f.page);
    let (from, to) = page_bounds(page, ROWS, rows.len());
    let query = query_without_page(raw);
    let body = html! {
        @match &verdict {
            Verdict::Intact { records, head } => p.ok role="status" id="chain" { "Hash chain intact: " (records) " records, head " (hex::encode(&head[..head.len().min(8)])) "…" },
            Verdict::Broken { at, why } => p.error role="alert" id="chain" { "Hash chain broken at record " (at) ": " (why) },
        }
        form.filters method="get" action="/audit" {
            label for="a-q" { "Search (actor, action, object, detail)" input id="a-q" name="q" type="search" value=(filled(&f.q).unwrap_or("")); }
            label for="a-outcome" { "Outcome" select id="a-outcome" name="outcome" {
                option value="" { "any" }
                @for o in ["success", "denied", "failed"] { option value=(o) selected[outcome == Some(o)] { (o) } }
            } }
            button type="submit" { "Search" }
        }
        p { (rows.len()) " records match." }
        table {
            thead { tr { th.num scope="col" { "Seq" } th scope="col" { "At" } th scope="col" { "Actor" } th scope="col" { "Action" } th scope="col" { "Object" } th scope="col" { "Outcome" } th scope="col" { "Detail" } } }
            tbody { @for r in &rows[from..to] { tr {
                td.num { (r.seq) } td { (time(Timestamp::from_millis(r.at))) } td { (r.actor) } td { (r.action) } td { (r.object) } td { (outcome_name(r.result)) } td { (r.detail) }
            } } }
        }
        (layout::pager("/audit", &query, page, to < rows.len()))
    };
    Ok(layout::page("Audit", &user, "/audit", body).into_response())
}
