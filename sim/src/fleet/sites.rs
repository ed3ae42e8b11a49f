//! Sites: placed near real cities, core sites in each country's largest cities.
//!
//! Sites are split between countries by weight (largest remainder, so the split is exact and
//! uses no randomness); every country gets at least one edge site once there are 40 edge
//! sites or more. Edge sites go to a city of their country drawn by population, core sites
//! alternate between the country's two largest cities. Each site gets its own `/28` gateway
//! range out of `100.64.0.0/10` in site order, so ranges never overlap.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use meridian_common::model::{Certification, GeoPoint, Ipv4Net, Site, SiteState, SiteTier};

use super::draw::{Draw, apportion};
use super::geography::{COUNTRIES, Country};
use super::{FleetCounts, id};

/// Pools of a core site.
pub(crate) const CORE_POOLS: [&str; 2] = ["training", "inference"];
/// Pools of an edge site.
pub(crate) const EDGE_POOLS: [&str; 2] = ["general", "mig"];

/// First address of the gateway space (`100.64.0.0/10`, shared address space, RFC 6598).
const GATEWAY_BASE: u32 = u32::from_be_bytes([100, 64, 0, 0]);
/// Gateway prefix length per site.
const GATEWAY_PREFIX: u8 = 28;

/// The gateway range of the `ordinal`-th site.
pub(crate) fn gateway_range(ordinal: usize) -> Ipv4Net {
    let step = 1u32 << (32 - u32::from(GATEWAY_PREFIX));
    let addr = GATEWAY_BASE + u32::try_from(ordinal).expect("site ordinal fits u32") * step;
    Ipv4Net::new(Ipv4Addr::from(addr), GATEWAY_PREFIX).expect("valid prefix length")
}

/// Rounds degrees to 1e-4 (about 10 m), so the rendered coordinates are short and exact.
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn near(rng: &mut Draw, centre: GeoPoint, spread: f64) -> GeoPoint {
    GeoPoint {
        lat: round4((centre.lat + rng.offset(spread)).clamp(-90.0, 90.0)),
        lon: round4((centre.lon + rng.offset(spread)).clamp(-180.0, 180.0)),
    }
}

pub(crate) fn generate(counts: &FleetCounts, rng: &mut Draw) -> Vec<Site> {
    let weights: Vec<u64> = COUNTRIES.iter().map(|c| c.weight).collect();
    let core_split = apportion(counts.core_sites, &weights, false);
    let edge_split = apportion(counts.edge_sites, &weights, true);
    let mut sites = Vec::with_capacity(counts.sites());
    for (country, n) in COUNTRIES.iter().zip(&core_split) {
        let mut per_city = [0usize; 2];
        for k in 0..*n {
            let city_idx = k % country.cities.len().min(2);
            per_city[city_idx] += 1;
            let id = format!("core-{}-{:03}", country.code_lower(), k + 1);
            let name = format!(
                "{}-core-{}",
                country.cities[city_idx].slug, per_city[city_idx]
            );
            let site = build(
                rng,
                country,
                city_idx,
                SiteTier::Core,
                &id,
                &name,
                sites.len(),
            );
            sites.push(site);
        }
    }
    for (country, n) in COUNTRIES.iter().zip(&edge_split) {
        let city_weights: Vec<u64> = country.cities.iter().map(|c| c.population).collect();
        let mut per_city = vec![0usize; country.cities.len()];
        for k in 0..*n {
            let city_idx = rng.weighted(&city_weights);
            per_city[city_idx] += 1;
            let id = format!("edge-{}-{:04}", country.code_lower(), k + 1);
            let name = format!(
                "{}-edge-{}",
                country.cities[city_idx].slug, per_city[city_idx]
            );
            let site = build(
                rng,
                country,
                city_idx,
                SiteTier::Edge,
                &id,
                &name,
                sites.len(),
            );
            sites.push(site);
        }
    }
    sites
}

fn build(
    rng: &mut Draw,
    country: &Country,
    city_idx: usize,
    tier: SiteTier,
    site_id: &str,
    name: &str,
    ordinal: usize,
) -> Site {
    let city = &country.cities[city_idx];
    let core = tier == SiteTier::Core;
    let spread = if core {
        country.spread_deg / 4.0
    } else {
        country.spread_deg
    };
    let location = near(rng, city.location(), spread);
    let mut certifications = BTreeSet::new();
    let mut maybe = |cert: Certification, core_pct: u64, edge_pct: u64| {
        if rng.percent(if core { core_pct } else { edge_pct }) {
            certifications.insert(cert);
        }
    };
    maybe(Certification::Iso27001, 100, 85);
    maybe(Certification::Soc2, 80, 40);
    maybe(Certification::PciDss, 40, 10);
    maybe(Certification::Gxp, 15, 0);
    if country.code == "US" {
        maybe(Certification::Hipaa, 70, 25);
    }
    if country.is_eu() {
        maybe(Certification::Sovereign, 50, 0);
    }
    let pools = if core { CORE_POOLS } else { EDGE_POOLS };
    // Micro-units per GPU-hour, in steps of 0.001: core 1.800..2.600, edge 3.000..4.500.
    let price_per_gpu_hour = if core {
        1_800_000 + rng.between(0, 800) * 1_000
    } else {
        3_000_000 + rng.between(0, 1_500) * 1_000
    };
    Site {
        id: id(site_id),
        name: id(name),
        tier,
        location,
        country: country.jurisdiction(),
        certifications,
        pools: pools.iter().map(|p| id(p)).collect(),
        gateway_range: gateway_range(ordinal),
        price_per_gpu_hour,
        state: SiteState::Online,
        // A core site's array holds 2 PiB, an edge site's 200 TiB (drawn from nothing, so the
        // datasets of earlier versions keep their fingerprints).
        storage_mib: match tier {
            SiteTier::Core => 2 * 1024 * 1024 * 1024,
            SiteTier::Edge => 200 * 1024 * 1024,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_ranges_are_consecutive_28s() {
        assert_eq!(gateway_range(0).to_string(), "100.64.0.0/28");
        assert_eq!(gateway_range(1).to_string(), "100.64.0.16/28");
        assert_eq!(gateway_range(16).to_string(), "100.64.1.0/28");
        assert_eq!(
            gateway_range(super::super::MAX_SITES - 1).to_string(),
            "100.127.255.240/28"
        );
    }
}
