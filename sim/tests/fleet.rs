//! The seeded benchmark fleet: counts, determinism, validity and the invariants the
//! benchmarks rely on (residency of replicas, unique IDs and gateway ranges, MIG share).
//!
//! The golden fingerprint below pins the fleet for seed 42 at scale 0.01. It changes when the
//! generator, the geography table, the model types it fills, or the ChaCha8 stream change.
//! A deliberate change to the generator means updating `GOLDEN_SEED_42_SCALE_0_01` (and
//! saying so in the change); an unexplained failure means the fleet differs on this platform
//! or with these library versions, which would make benchmark results incomparable.

use std::collections::BTreeSet;
use std::time::Instant;

use meridian_common::model::{Certification, GpuModel, JurisdictionGroup, MigConfig, SiteTier};
use meridian_common::validate::{
    validate_dataset, validate_region, validate_server, validate_site, validate_tenant,
};
use meridian_sim::fleet::geography::{self, Continent};
use meridian_sim::fleet::{Fleet, FleetSpec, generate};

/// Fingerprint of `generate(&FleetSpec::scaled(42, 0.01))`; see the module comment.
const GOLDEN_SEED_42_SCALE_0_01: u64 = 0x41ad_4eba_b7bd_385c;
/// Fingerprint of `generate(&FleetSpec::full(42))`, the benchmark fleet; same rules.
const GOLDEN_SEED_42_FULL: u64 = 0x6953_5574_980e_ae5a;

fn validate_all(fleet: &Fleet) {
    for s in &fleet.sites {
        validate_site(s).unwrap_or_else(|e| panic!("site {}: {e}", s.id));
    }
    for s in &fleet.servers {
        validate_server(s).unwrap_or_else(|e| panic!("server {}: {e}", s.id));
    }
    for r in &fleet.regions {
        validate_region(r).unwrap_or_else(|e| panic!("region {}: {e}", r.id));
    }
    for d in &fleet.datasets {
        validate_dataset(d).unwrap_or_else(|e| panic!("dataset {}: {e}", d.id));
    }
    for t in &fleet.tenants {
        validate_tenant(t).unwrap_or_else(|e| panic!("tenant {}: {e}", t.id));
    }
}

/// Every invariant that does not depend on the size of the fleet.
fn check_invariants(fleet: &Fleet) {
    // IDs unique within each kind.
    fn unique<'a>(what: &str, ids: impl Iterator<Item = &'a str>) {
        let mut seen = BTreeSet::new();
        for id in ids {
            assert!(seen.insert(id), "duplicate {what} id {id}");
        }
    }
    unique("site", fleet.sites.iter().map(|s| s.id.as_str()));
    unique("server", fleet.servers.iter().map(|s| s.id.as_str()));
    unique("region", fleet.regions.iter().map(|r| r.id.as_str()));
    unique("dataset", fleet.datasets.iter().map(|d| d.id.as_str()));
    unique("tenant", fleet.tenants.iter().map(|t| t.id.as_str()));
    unique("site name", fleet.sites.iter().map(|s| s.name.as_str()));
    unique("serial", fleet.servers.iter().map(|s| s.serial.as_str()));

    // Gateway ranges: /28s in 100.64.0.0/10, pairwise disjoint (sorted, so neighbours
    // suffice).
    let cgnat = meridian_common::model::Ipv4Net::parse("100.64.0.0/10").unwrap();
    let mut ranges: Vec<_> = fleet.sites.iter().map(|s| s.gateway_range).collect();
    ranges.sort();
    for r in &ranges {
        assert!(cgnat.contains_net(r), "{r}");
    }
    for w in ranges.windows(2) {
        assert!(!w[0].overlaps(&w[1]), "{} overlaps {}", w[0], w[1]);
    }

    // Sites: IDs say tier and country, prices put core below edge, all online.
    let max_core_price = fleet
        .sites
        .iter()
        .filter(|s| s.tier == SiteTier::Core)
        .map(|s| s.price_per_gpu_hour)
        .max()
        .unwrap();
    for s in &fleet.sites {
        let prefix = match s.tier {
            SiteTier::Core => "core-",
            SiteTier::Edge => "edge-",
        };
        let want = format!("{prefix}{}-", s.country.as_str().to_ascii_lowercase());
        assert!(s.id.as_str().starts_with(&want), "{}", s.id);
        assert!(geography::country_of(s.country).is_some());
        if s.tier == SiteTier::Edge {
            assert!(s.price_per_gpu_hour > max_core_price);
        }
        if s.certifications.contains(&Certification::Hipaa) {
            assert_eq!(s.country.as_str(), "US");
        }
        if s.certifications.contains(&Certification::Sovereign) {
            assert!(s.country.is_in(JurisdictionGroup::Eu) && s.tier == SiteTier::Core);
        }
    }

    // Servers: per-site shape, BMC names only, pools of their site.
    let mut servers = fleet.servers.iter();
    for site in &fleet.sites {
        let n = match site.tier {
            SiteTier::Core => 256,
            SiteTier::Edge => 4,
        };
        let mut mig_capable_servers = 0;
        for _ in 0..n {
            let server = servers.next().expect("servers follow sites");
            assert_eq!(server.site, site.id);
            assert_eq!(server.gpus.len(), 8);
            assert!(
                server.bmc.url.starts_with("https://bmc-")
                    && server.bmc.url.ends_with(".meridian.invalid"),
                "{}",
                server.bmc.url
            );
            assert!(!server.bmc.url.contains("://10."));
            assert!(site.pools.contains(server.pool.as_ref().unwrap()));
            assert_eq!(
                server.dpu.is_some(),
                site.tier == SiteTier::Core,
                "{}",
                server.id
            );
            let model = server.gpus[0].model;
            assert!(server.gpus.iter().all(|g| g.model == model));
            match site.tier {
                SiteTier::Core => {
                    assert!(matches!(model, GpuModel::H100_80GB | GpuModel::H200_141GB));
                }
                SiteTier::Edge => assert!(matches!(
                    model,
                    GpuModel::L40S | GpuModel::L4 | GpuModel::A100_80GB | GpuModel::H100_80GB
                )),
            }
            mig_capable_servers += usize::from(model.is_mig_capable());
            for g in &server.gpus {
                if let MigConfig::Enabled { .. } = g.mig {
                    assert!(g.mig_geometry().unwrap().is_some());
                }
            }
        }
        if site.tier == SiteTier::Edge {
            assert_eq!(mig_capable_servers, 1, "{}", site.id);
        }
    }
    assert!(servers.next().is_none());

    // Datasets: replicas on existing sites their residency allows; 1 to 3; owners exist.
    let sites: std::collections::BTreeMap<_, _> =
        fleet.sites.iter().map(|s| (s.id.clone(), s)).collect();
    let tenants: std::collections::BTreeMap<_, _> =
        fleet.tenants.iter().map(|t| (t.id.clone(), t)).collect();
    for d in &fleet.datasets {
        let owner = tenants.get(&d.tenant).expect("owner exists");
        assert_eq!(d.residency, owner.residency);
        assert!((1..=3).contains(&d.replicas.len()), "{}", d.id);
        assert!((1_000_000_000..=50_000_000_000_000).contains(&d.size_bytes));
        for r in &d.replicas {
            let site = sites.get(r).expect("replica site exists");
            assert!(
                d.residency.allows(site.country),
                "{} ({}) replicated at {} in {}",
                d.id,
                d.residency.terms.len(),
                site.id,
                site.country
            );
        }
    }
}

#[test]
fn small_fleet_is_valid_and_consistent() {
    let fleet = generate(&FleetSpec::scaled(7, 0.01));
    let s = fleet.summary();
    assert_eq!((s.core_sites, s.edge_sites), (1, 99));
    assert_eq!(s.servers, 99 * 4 + 256);
    assert_eq!((s.regions, s.datasets, s.tenants), (5, 20, 5));
    validate_all(&fleet);
    check_invariants(&fleet);
    let text = s.to_string();
    assert!(text.contains("sites: 100 (99 edge, 1 core)"), "{text}");
}

#[test]
fn tiny_fleets_keep_their_floors() {
    let fleet = generate(&FleetSpec::scaled(1, 0.001));
    assert_eq!(fleet.sites.len(), 10);
    assert_eq!(
        fleet
            .sites
            .iter()
            .filter(|s| s.tier == SiteTier::Core)
            .count(),
        1
    );
    assert_eq!(
        (
            fleet.regions.len(),
            fleet.datasets.len(),
            fleet.tenants.len()
        ),
        (5, 2, 2)
    );
    validate_all(&fleet);
    check_invariants(&fleet);
    for n in [1, 2, 3, 41, 150] {
        let fleet = generate(&FleetSpec::with_sites(5, n));
        assert_eq!(fleet.sites.len(), n);
        validate_all(&fleet);
        check_invariants(&fleet);
    }
}

#[test]
fn same_seed_same_fleet_other_seed_other_fleet() {
    let spec = FleetSpec::scaled(42, 0.01);
    let a = generate(&spec);
    let b = generate(&spec);
    assert_eq!(a, b);
    assert_eq!(a.fingerprint(), b.fingerprint());
    let c = generate(&FleetSpec::scaled(43, 0.01));
    assert_ne!(a.fingerprint(), c.fingerprint());
    // A larger fleet is a different fleet.
    assert_ne!(
        a.fingerprint(),
        generate(&FleetSpec::scaled(42, 0.02)).fingerprint()
    );
}

#[test]
fn golden_fingerprint() {
    let fleet = generate(&FleetSpec::scaled(42, 0.01));
    let got = fleet.fingerprint();
    assert_eq!(
        got, GOLDEN_SEED_42_SCALE_0_01,
        "the seed-42 fleet changed: got {got:#018x}; if the generator was changed on \
         purpose, update GOLDEN_SEED_42_SCALE_0_01 in sim/tests/fleet.rs"
    );
}

#[test]
fn fingerprint_sees_every_kind_of_change() {
    let base = generate(&FleetSpec::scaled(9, 0.002));
    let fp = base.fingerprint();
    let mut f = base.clone();
    f.sites[0].location.lat += 1e-9;
    assert_ne!(f.fingerprint(), fp);
    let mut f = base.clone();
    f.servers[3].gpus[7].memory_mib -= 1;
    assert_ne!(f.fingerprint(), fp);
    let mut f = base.clone();
    f.regions[0].population += 1;
    assert_ne!(f.fingerprint(), fp);
    let mut f = base.clone();
    f.datasets[0].size_bytes += 1;
    assert_ne!(f.fingerprint(), fp);
    let mut f = base.clone();
    f.tenants[0].weights.price += 1.0;
    assert_ne!(f.fingerprint(), fp);
    let mut f = base.clone();
    f.servers.swap(0, 1);
    assert_ne!(f.fingerprint(), fp);
}

/// The full spec's counts, computed without generating anything.
#[test]
fn full_counts() {
    let c = FleetSpec::full(42).counts();
    assert_eq!(c.sites(), 10_000);
    assert_eq!((c.core_sites, c.edge_sites), (100, 9_900));
    assert_eq!(c.servers, 9_900 * 4 + 100 * 256);
    assert_eq!(c.gpus, 65_200 * 8);
    assert_eq!(c.mig_capable_edge_gpus, 9_900 * 8);
    assert_eq!((c.regions, c.datasets, c.tenants), (200, 2_000, 500));
}

/// The whole 10,000-site benchmark fleet: counts, geography, MIG share, validity and every
/// invariant. About 1.5 s in a debug build (generation about 0.4 s).
#[test]
fn full_fleet() {
    let started = Instant::now();
    let fleet = generate(&FleetSpec::full(42));
    let generated = started.elapsed();
    let s = fleet.summary();
    assert_eq!((s.core_sites, s.edge_sites), (100, 9_900));
    assert_eq!(s.servers, 65_200);
    assert_eq!(s.gpus, 521_600);
    assert_eq!((s.regions, s.datasets, s.tenants), (200, 2_000, 500));
    assert_eq!(s.countries, 40);
    assert_eq!(s.continents, 5);
    let continents: BTreeSet<Continent> = fleet
        .sites
        .iter()
        .map(|s| geography::country_of(s.country).unwrap().continent)
        .collect();
    assert_eq!(continents.len(), Continent::ALL.len());
    // A quarter of the edge GPUs are MIG-capable (exactly: one server of four per site).
    assert_eq!(s.edge_gpus, 9_900 * 32);
    assert_eq!(s.mig_capable_edge_gpus * 4, s.edge_gpus);
    assert!(s.mig_enabled_gpus > 0);
    let sum: usize = s.gpus_by_model.values().sum();
    assert_eq!(sum, s.gpus);
    // Some EU data exists and stays in the EU.
    let eu = fleet
        .datasets
        .iter()
        .filter(|d| {
            d.residency.terms
                == [meridian_common::model::ResidencyTerm::Group(
                    JurisdictionGroup::Eu,
                )]
                .into_iter()
                .collect()
        })
        .count();
    assert!(eu > 100, "{eu} EU datasets");
    validate_all(&fleet);
    check_invariants(&fleet);
    let got = fleet.fingerprint();
    assert_eq!(
        got, GOLDEN_SEED_42_FULL,
        "the seed-42 benchmark fleet changed: got {got:#018x}; if the generator was changed \
         on purpose, update GOLDEN_SEED_42_FULL in sim/tests/fleet.rs"
    );
    eprintln!(
        "full fleet generated in {generated:?}, checked in {:?}\n{s}",
        started.elapsed()
    );
}
