//! Datasets: 1 GB to 50 TB (log-uniform), owned by tenants, with 1 to 3 replicas on sites
//! their tenant's residency allows.
//!
//! A dataset inherits its tenant's residency rule, and its replicas are drawn only from
//! sites that rule allows (an EU dataset lives only at EU sites). Half of the datasets keep
//! their first replica at a core site when one is allowed.

use meridian_common::model::{Dataset, ResidencyRule, Site, SiteTier, Tenant};

use super::draw::{Draw, exp2_frac};
use super::id;

/// Smallest dataset: 1 GB.
pub const MIN_DATASET_BYTES: u64 = 1_000_000_000;
/// Largest dataset: 50 TB.
pub const MAX_DATASET_BYTES: u64 = 50_000_000_000_000;
/// `log2(MAX_DATASET_BYTES / MIN_DATASET_BYTES)` = `log2(50_000)`.
const SIZE_OCTAVES: f64 = 15.609_640_474_436_812;

const KINDS: &[&str] = &[
    "llm-weights",
    "training-corpus",
    "embeddings",
    "video-frames",
    "genomes",
    "telemetry",
    "checkpoints",
    "satellite-imagery",
    "speech",
    "clickstream",
];

/// A log-uniform size in `MIN_DATASET_BYTES..=MAX_DATASET_BYTES`, by portable arithmetic:
/// `2^t` for uniform `t` as `2^floor(t) * 2^frac(t)`.
fn size(rng: &mut Draw) -> u64 {
    let t = rng.unit() * SIZE_OCTAVES;
    let whole = t as u32; // t < 16, floor
    let factor = (1u64 << whole) as f64 * exp2_frac(t - f64::from(whole));
    let bytes = (MIN_DATASET_BYTES as f64 * factor) as u64;
    bytes.clamp(MIN_DATASET_BYTES, MAX_DATASET_BYTES)
}

/// Indices of the sites a rule allows (all and core only), cached per distinct rule.
struct Eligible {
    rules: Vec<(ResidencyRule, Vec<usize>, Vec<usize>)>,
}

impl Eligible {
    fn of<'a>(&'a mut self, rule: &ResidencyRule, sites: &[Site]) -> (&'a [usize], &'a [usize]) {
        let at = match self.rules.iter().position(|(r, _, _)| r == rule) {
            Some(at) => at,
            None => {
                let all: Vec<usize> = (0..sites.len())
                    .filter(|i| rule.allows(sites[*i].country))
                    .collect();
                let core = all
                    .iter()
                    .copied()
                    .filter(|i| sites[*i].tier == SiteTier::Core)
                    .collect();
                self.rules.push((rule.clone(), all, core));
                self.rules.len() - 1
            }
        };
        let (_, all, core) = &self.rules[at];
        (all, core)
    }
}

pub(crate) fn generate(
    n: usize,
    tenants: &[Tenant],
    sites: &[Site],
    rng: &mut Draw,
) -> Vec<Dataset> {
    let mut eligible = Eligible { rules: Vec::new() };
    (1..=n)
        .map(|i| {
            let tenant = rng.pick(tenants);
            let kind = rng.pick(KINDS);
            let size_bytes = size(rng);
            let wanted = rng.between(1, 3) as usize;
            let (all, core) = eligible.of(&tenant.residency, sites);
            let mut picks: Vec<usize> = rng
                .distinct(all.len(), wanted)
                .into_iter()
                .map(|k| all[k])
                .collect();
            let has_core = picks.iter().any(|s| sites[*s].tier == SiteTier::Core);
            if !core.is_empty() && !has_core && !picks.is_empty() && rng.percent(50) {
                picks[0] = *rng.pick(core);
            }
            Dataset {
                id: id(&format!("ds-{i:05}")),
                tenant: tenant.id.clone(),
                name: id(&format!("{kind}-{i}")),
                size_bytes,
                replicas: picks.into_iter().map(|s| sites[s].id.clone()).collect(),
                residency: tenant.residency.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::draw::{Stage, stage_rng};
    use super::*;

    #[test]
    fn sizes_are_log_uniform_in_range() {
        let mut rng = stage_rng(3, Stage::Datasets);
        let mut per_decade = [0u32; 5];
        for _ in 0..20_000 {
            let s = size(&mut rng);
            assert!((MIN_DATASET_BYTES..=MAX_DATASET_BYTES).contains(&s));
            // 1-10 GB, 10-100 GB, 100 GB-1 TB, 1-10 TB, 10-50 TB.
            let mut d = 0;
            let mut edge = MIN_DATASET_BYTES * 10;
            while s >= edge && d < 4 {
                d += 1;
                edge *= 10;
            }
            per_decade[d] += 1;
        }
        // log10(50_000) = 4.7 decades: full decades get 1/4.7 of the draws (about 4,255),
        // the last (10-50 TB) 0.7/4.7 (about 2,980).
        for d in &per_decade[..4] {
            assert!((3_900..4_600).contains(d), "{per_decade:?}");
        }
        assert!((2_650..3_300).contains(&per_decade[4]), "{per_decade:?}");
    }

    #[test]
    fn octaves_constant_is_log2_of_the_ratio() {
        let want = ((MAX_DATASET_BYTES / MIN_DATASET_BYTES) as f64).log2();
        assert!((SIZE_OCTAVES - want).abs() < 1e-12);
    }
}
