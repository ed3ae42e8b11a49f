//! Human-readable explanations of decisions and the nearest misses of failures.

use std::collections::BTreeMap;
use std::fmt::Write;

use meridian_common::model::{RejectReason, ScoreBreakdown};

use super::decide::{Candidate, Filtered, Resolved, Slot};
use super::fleet::FleetIndex;
use super::{NearMiss, PlannerConfig};

fn reason_name(r: RejectReason) -> &'static str {
    match r {
        RejectReason::SiteNotOnline => "not online",
        RejectReason::Residency => "residency",
        RejectReason::DatasetResidency => "dataset residency",
        RejectReason::Certification => "certification",
        RejectReason::Tier => "tier",
        RejectReason::Latency => "latency",
        RejectReason::Capacity => "capacity",
        RejectReason::Spread => "spread",
        RejectReason::Colocation => "colocation",
        RejectReason::Quota => "quota",
        RejectReason::Hardware => "no such hardware",
    }
}

/// `1234 sites rejected: 1000 residency, 234 latency`, largest first.
fn rejections(r: &BTreeMap<RejectReason, u32>) -> String {
    let total: u32 = r.values().sum();
    if total == 0 {
        return "no site rejected".into();
    }
    let mut parts: Vec<_> = r.iter().collect();
    parts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let listed: Vec<String> = parts
        .iter()
        .map(|(reason, n)| format!("{n} {}", reason_name(**reason)))
        .collect();
    format!("{total} sites rejected: {}", listed.join(", "))
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The explanation of a placement.
pub(crate) fn placed<'a>(
    fleet: &FleetIndex,
    config: &PlannerConfig,
    r: &Resolved,
    filtered: &Filtered,
    chosen: impl Iterator<Item = (&'a Candidate, &'a Slot)>,
    score: &ScoreBreakdown,
) -> String {
    let mut per_site: BTreeMap<u32, (u32, &Candidate)> = BTreeMap::new();
    for (c, _) in chosen {
        per_site.entry(c.site).or_insert((0, c)).0 += 1;
    }
    let mut text = format!(
        "placed {} replica{} on {} site{}",
        r.replicas,
        if r.replicas == 1 { "" } else { "s" },
        per_site.len(),
        if per_site.len() == 1 { "" } else { "s" }
    );
    for (site, (n, c)) in per_site.iter().take(4) {
        let _ = write!(text, "; {} x{n}", fleet.sites[*site as usize].id);
        if let Some((_, max)) = &r.latency {
            let _ = write!(text, " (RTT {:.1} ms <= {max} ms", c.worst_rtt);
        } else {
            text.push_str(" (");
        }
        if r.bytes_read > 0 {
            let secs = c.bytes_to_move as f64 * 8.0 / (config.inter_site_gbps * 1e9);
            let _ = write!(
                text,
                "{}{} of {} to move, ~{secs:.0} s",
                if r.latency.is_some() { ", " } else { "" },
                bytes(c.bytes_to_move),
                bytes(r.bytes_read)
            );
        }
        text.push(')');
    }
    if per_site.len() > 4 {
        let _ = write!(text, "; and {} more sites", per_site.len() - 4);
    }
    let _ = write!(
        text,
        ". Score {:.1}/100 (latency {:.2}, data {:.2}, price {:.2}, packing {:.2}). {} of {}; {} candidates passed every filter ({} could not win and were not examined for capacity).",
        score.total * 100.0,
        score.latency,
        score.data,
        score.price,
        score.packing,
        rejections(&filtered.rejections),
        fleet.sites.len(),
        filtered.candidates.len(),
        filtered.unexamined
    );
    text
}

/// The closest misses, best first: sites that failed a late filter, or for a latency
/// constraint the sites just beyond the limit of its tightest region.
pub(crate) fn near_misses(fleet: &FleetIndex, r: &Resolved, filtered: &Filtered) -> Vec<NearMiss> {
    let mut misses = filtered.misses.clone();
    misses.sort_by(|a, b| {
        b.depth
            .cmp(&a.depth)
            .then(a.value.total_cmp(&b.value))
            .then(a.site.cmp(&b.site))
    });
    let mut out: Vec<NearMiss> = misses
        .iter()
        .map(|m| {
            let site = &fleet.sites[m.site as usize];
            let detail = match m.reason {
                RejectReason::Latency => format!("RTT {:.1} ms over the limit", m.value),
                RejectReason::Certification => {
                    format!("lacks {} required certification(s)", m.value)
                }
                RejectReason::Colocation => format!("{} replica(s) short", m.value),
                RejectReason::Capacity => "no free GPU of the kind for the whole window".into(),
                RejectReason::Quota => "a new site would exceed the tenant's site quota".into(),
                RejectReason::SiteNotOnline => "site is not online".into(),
                other => reason_name(other).into(),
            };
            NearMiss {
                site: site.id.clone(),
                reason: m.reason,
                detail,
            }
        })
        .collect();
    if out.len() < 3
        && let Some((regions, max)) = &r.latency
    {
        let key = r.need.key();
        for &region in regions {
            let all = fleet.rtt.within(region, f32::INFINITY);
            let inside = fleet.rtt.within(region, *max).len();
            for &(rtt, s) in all[inside..].iter() {
                let site = &fleet.hot[s as usize];
                let id = &fleet.sites[s as usize].id;
                if r.allowed.contains(site.country)
                    && r.data_allowed.contains(site.country)
                    && site.has(key)
                    && !out.iter().any(|m| &m.site == id)
                {
                    out.push(NearMiss {
                        site: id.clone(),
                        reason: RejectReason::Latency,
                        detail: format!("RTT {rtt:.1} ms > {max} ms"),
                    });
                    break;
                }
            }
            if out.len() >= 3 {
                break;
            }
        }
    }
    out.truncate(3);
    out
}

/// The explanation of a failure.
pub(crate) fn unplaceable(
    fleet: &FleetIndex,
    filtered: &Filtered,
    near: &[NearMiss],
    reason: &str,
) -> String {
    let mut text = format!(
        "not placed: {reason}. {} of {}",
        rejections(&filtered.rejections),
        fleet.sites.len()
    );
    if !near.is_empty() {
        let listed: Vec<String> = near
            .iter()
            .map(|m| format!("{} ({})", m.site, m.detail))
            .collect();
        let _ = write!(text, ". Nearest: {}", listed.join("; "));
    }
    text.push('.');
    text
}
