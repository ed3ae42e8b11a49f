//! Tenants: a mix of residency policies, quotas, scoring weights and priorities.
//!
//! Residency mix: about 30 % EU (a third of those EEA), 20 % a single country, 15 %
//! FIVE_EYES, 5 % APAC, 30 % anywhere. A policy that no site of the fleet satisfies (possible
//! in a tiny fleet) falls back to anywhere, so every tenant can place data somewhere.
//! Tenants get no overlay network: central allocates it when the tenant is created.

use std::collections::BTreeMap;

use meridian_common::model::{
    GpuModel, Jurisdiction, JurisdictionGroup, Quotas, ResidencyRule, ResidencyTerm, ScoreWeights,
    Site, Tenant,
};

use super::draw::Draw;
use super::id;

const ADJECTIVES: &[&str] = &[
    "amber", "arctic", "blue", "bright", "cobalt", "crimson", "delta", "ember", "golden",
    "granite", "iron", "jade", "lunar", "nimble", "north", "polar", "quantum", "rapid", "silver",
    "solar", "stellar", "swift", "vivid", "zenith",
];
const NOUNS: &[&str] = &[
    "analytics",
    "bio",
    "cloud",
    "dynamics",
    "foundry",
    "genomics",
    "health",
    "labs",
    "logic",
    "media",
    "motors",
    "networks",
    "robotics",
    "systems",
    "vision",
    "works",
];

/// GPU models a tenant may get quota for.
const QUOTA_MODELS: [GpuModel; 5] = [
    GpuModel::H100_80GB,
    GpuModel::H200_141GB,
    GpuModel::A100_80GB,
    GpuModel::L40S,
    GpuModel::L4,
];

fn residency(rng: &mut Draw, countries: &[Jurisdiction]) -> ResidencyRule {
    let group = |g| ResidencyRule::new([ResidencyTerm::Group(g)]);
    match rng.below(100) {
        0..30 => {
            if rng.percent(33) {
                group(JurisdictionGroup::Eea)
            } else {
                group(JurisdictionGroup::Eu)
            }
        }
        30..50 => ResidencyRule::new([ResidencyTerm::Country(*rng.pick(countries))]),
        50..65 => group(JurisdictionGroup::FiveEyes),
        65..70 => group(JurisdictionGroup::Apac),
        _ => ResidencyRule::anywhere(),
    }
}

fn weight(rng: &mut Draw) -> f64 {
    (rng.between(0, 20) * 5) as f64
}

pub(crate) fn generate(n: usize, sites: &[Site], rng: &mut Draw) -> Vec<Tenant> {
    // Countries with sites, in code order, each once.
    let mut countries: Vec<Jurisdiction> = sites.iter().map(|s| s.country).collect();
    countries.sort();
    countries.dedup();
    (1..=n)
        .map(|i| {
            let adjective = rng.pick(ADJECTIVES);
            let noun = rng.pick(NOUNS);
            let mut rule = residency(rng, &countries);
            if !countries.iter().any(|c| rule.allows(*c)) {
                rule = ResidencyRule::anywhere();
            }
            let mut gpus_per_model = BTreeMap::new();
            for model in QUOTA_MODELS {
                if rng.percent(50) {
                    gpus_per_model.insert(model, 8 * rng.between(1, 64) as u32);
                }
            }
            Tenant {
                id: id(&format!("tenant-{i:04}")),
                name: id(&format!("{adjective}-{noun}-{i}")),
                quotas: Quotas {
                    gpus_per_model,
                    mig_slices: 7 * rng.between(0, 32) as u32,
                    concurrent_reservations: rng.between(10, 500) as u32,
                    sites: rng.between(5, 200) as u32,
                    // 100 TiB each, drawn from nothing (earlier datasets keep their
                    // fingerprints).
                    storage_mib: 100 * 1024 * 1024,
                },
                residency: rule,
                weights: ScoreWeights {
                    latency: weight(rng),
                    data: weight(rng),
                    price: weight(rng),
                    packing: weight(rng),
                },
                max_priority: *rng.pick(&[10, 100, 1000]),
                network: None,
            }
        })
        .collect()
}
