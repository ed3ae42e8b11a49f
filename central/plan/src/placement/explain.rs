//! Human-readable explanations of decisions and the nearest misses of failures.

use std::collections::BTreeMap;
use std::fmt::Write;

use meridian_common::model::{RejectReason, ScoreBreakdown};

use super::decide::{
    self, Candidate, DEPTH_HARDWARE, DEPTH_LATENCY, DEPTH_RESIDENCY, Filtered, Miss, Need,
    Resolved, Slot,
};
use super::fleet::{FleetIndex, STORAGE_BIT, hardware_key};
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
        RejectReason::Hardware => "hardware",
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
        if let Some((regions, max)) = &r.latency {
            let measured = match regions[..] {
                [only] => fleet.rtt.is_measured(only, *site),
                _ => worst_rtt(fleet, regions, *site).2,
            };
            let _ = write!(
                text,
                " (RTT {} ms {} <= {} ms",
                Ms(c.worst_rtt),
                if measured { "measured" } else { "estimated" },
                Ms(*max)
            );
        }
        if r.bytes_read > 0 {
            let secs = c.bytes_to_move as f64 * 8.0 / (config.inter_site_gbps * 1e9);
            let _ = write!(
                text,
                "{}{} of {} to move, ~{secs:.0} s",
                if r.latency.is_some() { ", " } else { " (" },
                bytes(c.bytes_to_move),
                bytes(r.bytes_read)
            );
        }
        if r.latency.is_some() || r.bytes_read > 0 {
            text.push(')');
        }
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

/// A duration in ms: whole milliseconds without decimals (`30 ms`), else one decimal
/// (`12.5 ms`).
pub(crate) struct Ms(pub f32);

impl std::fmt::Display for Ms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        if (v - v.round()).abs() < 1e-4 && v.abs() < 1e9 {
            write!(f, "{}", v.round() as i64)
        } else {
            write!(f, "{v:.1}")
        }
    }
}

/// The worst RTT of `site` over the `from` regions: (RTT, region, measured).
fn worst_rtt(fleet: &FleetIndex, regions: &[u32], site: u32) -> (f32, u32, bool) {
    regions
        .iter()
        .map(|&rg| (fleet.rtt.get(rg, site), rg, fleet.rtt.is_measured(rg, site)))
        .fold(
            (f32::MIN, 0, false),
            |best, x| if x.0 > best.0 { x } else { best },
        )
}

/// `RTT measured 30 ms > 20 ms from fr-paris (distance estimate 5.0 ms)` or
/// `RTT estimated 9.0 ms > 8 ms from fr-paris`.
fn rtt_over(
    fleet: &FleetIndex,
    rtt: f32,
    region: u32,
    site: u32,
    measured: bool,
    max: f32,
) -> String {
    let from = &fleet.region_ids[region as usize];
    if measured {
        format!(
            "RTT measured {} ms > {} ms from {from} (distance estimate {} ms)",
            Ms(rtt),
            Ms(max),
            Ms(fleet.rtt.estimate_of(region, site))
        )
    } else {
        format!("RTT estimated {} ms > {} ms from {from}", Ms(rtt), Ms(max))
    }
}

/// What hardware `site` lacks for `r`: `no MIG-enabled H100-80GB GPU (its H100-80GB GPUs have
/// MIG disabled)`, `no usable L4 GPU`, `no storage array`, or both.
fn hardware_detail(fleet: &FleetIndex, r: &Resolved, site: u32) -> String {
    let cell = &fleet.sites[site as usize];
    let hot = &fleet.hot[site as usize];
    let mut parts = Vec::new();
    if !hot.has(r.need.key()) {
        parts.push(match r.need {
            Need::NoGpu => "no servers".to_owned(),
            Need::Mig { model, .. }
                if cell.capacity[usize::from(hardware_key(model, false))] > 0 =>
            {
                format!("no MIG-enabled {model} GPU (its {model} GPUs have MIG disabled)")
            }
            Need::Whole { model, .. } | Need::BareMetal { model }
                if cell.capacity[usize::from(hardware_key(model, true))] > 0 =>
            {
                format!("no {model} GPU with MIG disabled (its {model} GPUs are MIG-enabled)")
            }
            Need::Whole { model, .. } | Need::BareMetal { model } | Need::Mig { model, .. } => {
                format!("no usable {model} GPU")
            }
        });
    }
    if r.storage_mib > 0 && hot.keys & STORAGE_BIT == 0 {
        parts.push("no storage array".to_owned());
    }
    parts.join(" and ")
}

/// Why a site that passed every filter had no room: its storage array, drained servers, or
/// the hardware busy in the window.
fn capacity_detail(fleet: &FleetIndex, r: &Resolved, site: u32) -> String {
    if r.storage_mib > 0 {
        let array = &fleet.sites[site as usize].storage;
        let used = array.used(&r.span);
        if array.total.saturating_sub(used) < r.storage_mib {
            return format!(
                "storage array full for the window: {used} of {} MiB booked, a replica needs {} MiB",
                array.total, r.storage_mib
            );
        }
    }
    let mut free = Vec::new();
    if decide::find_server_slot(fleet, r, site, &mut free, false).is_none()
        && decide::find_server_slot(fleet, r, site, &mut free, true).is_some()
    {
        return "drained: every server with room for it is drained".into();
    }
    match r.need {
        Need::NoGpu => "no server with enough CPU cores and memory".into(),
        _ => format!("no {} free for the whole window", r.need.hardware()),
    }
}

/// Sites that fail exactly one index-level filter (residency, dataset residency, hardware)
/// and pass every per-site check: they would otherwise be candidates. Looked for only where
/// that reason rejected sites, among the sites within the tightest latency limit (nearest
/// first), the pinned server's site, or every site in ID order, up to three per reason.
fn index_misses(fleet: &FleetIndex, r: &Resolved, filtered: &Filtered) -> Vec<Miss> {
    const KEEP: usize = 3;
    let wanted = [
        (RejectReason::Residency, DEPTH_RESIDENCY),
        (RejectReason::DatasetResidency, DEPTH_RESIDENCY),
        (RejectReason::Hardware, DEPTH_HARDWARE),
    ];
    let mut want: Vec<(RejectReason, u8, usize)> = wanted
        .iter()
        .filter(|(reason, _)| filtered.rejections.contains_key(reason))
        .map(|&(reason, depth)| (reason, depth, 0))
        .collect();
    let mut out = Vec::new();
    if want.is_empty() {
        return out;
    }
    let mut consider = |s: u32, out: &mut Vec<Miss>| {
        let Some(only) = decide::only_index_failure(fleet, r, s) else {
            return;
        };
        let Some(w) = want.iter_mut().find(|w| w.0 == only && w.2 < KEEP) else {
            return;
        };
        if !decide::passes_site_checks(fleet, r, s) {
            return;
        }
        w.2 += 1;
        let value = match &r.latency {
            Some((regions, _)) => worst_rtt(fleet, regions, s).0,
            None => 0.0,
        };
        out.push(Miss {
            depth: w.1,
            site: s,
            reason: only,
            value,
        });
    };
    if let Some(pin) = r.pin {
        consider(fleet.servers[pin as usize].site, &mut out);
    } else if let Some((regions, max)) = &r.latency {
        let prefix = regions
            .iter()
            .map(|&rg| fleet.rtt.within(rg, *max))
            .min_by_key(|p| p.len())
            .unwrap_or(&[]);
        for &(_, s) in prefix {
            consider(s, &mut out);
        }
    } else {
        for s in 0..fleet.sites.len() as u32 {
            consider(s, &mut out);
        }
    }
    out
}

/// The closest misses, best first, different reasons first: up to three of the sites that
/// failed a late filter, the sites just beyond the latency limit of each `from` region, and
/// the sites that fail only one index-level filter (residency, hardware).
pub(crate) fn near_misses(fleet: &FleetIndex, r: &Resolved, filtered: &Filtered) -> Vec<NearMiss> {
    const KEEP: usize = 3;
    let mut misses = filtered.misses.clone();
    if let Some((regions, max)) = &r.latency {
        let key = r.need.key();
        for &region in regions {
            let all = fleet.rtt.within(region, f32::INFINITY);
            let inside = fleet.rtt.within(region, *max).len();
            let mut named = 0;
            for &(rtt, s) in all[inside..].iter() {
                let site = &fleet.hot[s as usize];
                if r.allowed.contains(site.country)
                    && r.data_allowed.contains(site.country)
                    && r.tiers[usize::from(site.tier)]
                    && site.has_all(key, r.storage_mib > 0)
                {
                    misses.push(Miss {
                        depth: DEPTH_LATENCY,
                        site: s,
                        reason: RejectReason::Latency,
                        value: rtt - max,
                    });
                    named += 1;
                    if named == KEEP {
                        break;
                    }
                }
            }
        }
    }
    misses.extend(index_misses(fleet, r, filtered));
    misses.sort_by(Miss::closer_first);
    let mut seen = std::collections::BTreeSet::new();
    misses.retain(|m| seen.insert(m.site));
    let mut chosen: Vec<Miss> = Vec::with_capacity(KEEP);
    for m in &misses {
        if chosen.len() < KEEP && !chosen.iter().any(|c| c.reason == m.reason) {
            chosen.push(*m);
        }
    }
    for m in &misses {
        if chosen.len() < KEEP && !chosen.iter().any(|c| c.site == m.site) {
            chosen.push(*m);
        }
    }
    chosen.sort_by(Miss::closer_first);
    chosen
        .iter()
        .map(|m| {
            let site = &fleet.sites[m.site as usize];
            let country = fleet.countries[usize::from(fleet.hot[m.site as usize].country)];
            let detail = match m.reason {
                RejectReason::Latency => match &r.latency {
                    Some((regions, max)) => {
                        // The region that stopped it: the worst over every `from` region.
                        let (rtt, region, measured) = worst_rtt(fleet, regions, m.site);
                        rtt_over(fleet, rtt, region, m.site, measured, *max)
                    }
                    None => reason_name(m.reason).into(),
                },
                RejectReason::Certification => {
                    format!("lacks {} required certification(s)", m.value)
                }
                RejectReason::Colocation => format!("{} replica(s) short", m.value),
                RejectReason::Capacity => capacity_detail(fleet, r, m.site),
                RejectReason::Quota => "a new site would exceed the tenant's site quota".into(),
                RejectReason::SiteNotOnline => "site is not online".into(),
                RejectReason::Hardware => hardware_detail(fleet, r, m.site),
                RejectReason::Residency => {
                    format!("its country {country} is outside the residency rule")
                }
                RejectReason::DatasetResidency => {
                    format!("its country {country} is outside a dataset's residency rule")
                }
                other => reason_name(other).into(),
            };
            NearMiss {
                site: site.id.clone(),
                reason: m.reason,
                detail,
            }
        })
        .collect()
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
