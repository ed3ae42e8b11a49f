//! The seeded benchmark fleet: sites, servers, user regions, tenants and datasets generated
//! from a seed, identical on every run and every machine.
//!
//! The full benchmark fleet ([`FleetSpec::full`]) has 10,000 sites in 40 countries on five
//! continents: 9,900 edge sites of 4 servers x 8 GPUs (a quarter of those GPUs MIG-capable)
//! and 100 core sites of 256 servers x 8 GPUs; 200 user regions; 2,000 datasets of 1 GB to
//! 50 TB with 1 to 3 replicas; 500 tenants with residency policies. [`FleetSpec::scaled`]
//! shrinks (or grows) every count linearly, and [`FleetSpec::with_sites`] asks for an exact
//! number of sites.
//!
//! # Determinism
//!
//! Each stage (sites, servers, regions, tenants, datasets) draws from its own ChaCha8 stream
//! (the seed's key, the stage as stream number), so stages never shift each other's draws.
//! Draws use only the raw 64-bit output and portable arithmetic (see `draw.rs`): no
//! transcendental functions, no `HashMap` iteration, no library distribution code. A fleet's
//! [`Fleet::fingerprint`] (FNV-1a over a canonical binary rendering) pins it; the tests hold
//! a golden fingerprint, which must be updated whenever the generator is changed on purpose.

use meridian_common::model::{Dataset, Region, Server, Site, Tenant};

mod datasets;
mod draw;
mod fingerprint;
pub mod geography;
mod load;
mod regions;
mod servers;
mod sites;
mod summary;
mod tenants;

pub use load::load_with_admin;

pub use summary::FleetSummary;

use draw::{Stage, stage_rng};

/// Sites of the full benchmark fleet.
pub const FULL_SITES: usize = 10_000;
/// Core sites of the full benchmark fleet (the rest are edge sites: 99 edge per core).
pub const FULL_CORE_SITES: usize = 100;
/// User regions of the full fleet.
pub const FULL_REGIONS: usize = 200;
/// Datasets of the full fleet.
pub const FULL_DATASETS: usize = 2_000;
/// Tenants of the full fleet.
pub const FULL_TENANTS: usize = 500;
/// Servers per edge site.
pub const EDGE_SERVERS_PER_SITE: usize = 4;
/// Servers per core site.
pub const CORE_SERVERS_PER_SITE: usize = 256;
/// GPUs per server (edge and core).
pub const GPUS_PER_SERVER: usize = 8;
/// Minimum counts of a scaled fleet.
pub const MIN_REGIONS: usize = 5;
/// Minimum datasets of a scaled fleet.
pub const MIN_DATASETS: usize = 2;
/// Minimum tenants of a scaled fleet.
pub const MIN_TENANTS: usize = 2;
/// Most sites a fleet can have: one gateway /28 each out of `100.64.0.0/10`.
pub const MAX_SITES: usize = 1 << 18;

/// What fleet to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FleetSpec {
    /// The seed; the same spec always gives the same fleet.
    pub seed: u64,
    /// Size relative to the full benchmark fleet (1.0 = 10,000 sites). Finite, `>= 0`.
    pub scale: f64,
    /// Exact number of sites, overriding `scale` for sites only (the simulator's
    /// `--sites N`); edge and core keep the 99:1 ratio with at least one core site.
    pub sites: Option<usize>,
}

impl FleetSpec {
    /// The full benchmark fleet.
    pub fn full(seed: u64) -> Self {
        Self::scaled(seed, 1.0)
    }

    /// The fleet scaled by `scale` (counts scale linearly, with floors: at least one core and
    /// one edge site, 5 regions, 2 datasets, 2 tenants).
    pub fn scaled(seed: u64, scale: f64) -> Self {
        Self {
            seed,
            scale,
            sites: None,
        }
    }

    /// Exactly `sites` sites; regions, datasets and tenants scale with `sites / 10,000`.
    pub fn with_sites(seed: u64, sites: usize) -> Self {
        Self {
            seed,
            scale: sites as f64 / FULL_SITES as f64,
            sites: Some(sites),
        }
    }

    /// The counts this spec generates, computed without generating anything.
    ///
    /// # Panics
    ///
    /// When `scale` is not finite or negative, or the fleet would exceed [`MAX_SITES`].
    pub fn counts(&self) -> FleetCounts {
        assert!(
            self.scale.is_finite() && self.scale >= 0.0,
            "fleet scale must be a finite number >= 0, got {}",
            self.scale
        );
        let scaled = |full: usize, min: usize| -> usize {
            let n = (full as f64 * self.scale).round();
            // Saturating float-to-int conversion; MAX_SITES bounds what is usable anyway.
            (n as usize).max(min)
        };
        let total = match self.sites {
            Some(n) => n.max(1),
            None => scaled(FULL_SITES, 2),
        };
        assert!(
            total <= MAX_SITES,
            "a fleet has at most {MAX_SITES} sites, asked for {total}"
        );
        let ratio = FULL_SITES / FULL_CORE_SITES;
        let mut core = ((total + ratio / 2) / ratio).max(1);
        if self.sites.is_none() && total >= 2 && core == total {
            core = total - 1;
        }
        let edge = total - core;
        let servers = core * CORE_SERVERS_PER_SITE + edge * EDGE_SERVERS_PER_SITE;
        FleetCounts {
            core_sites: core,
            edge_sites: edge,
            servers,
            gpus: servers * GPUS_PER_SERVER,
            mig_capable_edge_gpus: edge * GPUS_PER_SERVER, // one server of four per edge site
            regions: scaled(FULL_REGIONS, MIN_REGIONS),
            datasets: scaled(FULL_DATASETS, MIN_DATASETS),
            tenants: scaled(FULL_TENANTS, MIN_TENANTS),
        }
    }
}

/// How many of each object a [`FleetSpec`] generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetCounts {
    /// Core sites.
    pub core_sites: usize,
    /// Edge sites.
    pub edge_sites: usize,
    /// Servers (edge and core).
    pub servers: usize,
    /// GPUs (edge and core).
    pub gpus: usize,
    /// MIG-capable GPUs at edge sites (a quarter of the edge GPUs).
    pub mig_capable_edge_gpus: usize,
    /// User regions.
    pub regions: usize,
    /// Datasets.
    pub datasets: usize,
    /// Tenants.
    pub tenants: usize,
}

impl FleetCounts {
    /// All sites.
    pub fn sites(&self) -> usize {
        self.core_sites + self.edge_sites
    }
}

/// A generated fleet. Sites are ordered core first then edge, each by country; servers are
/// grouped by site in site order.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    /// Every site.
    pub sites: Vec<Site>,
    /// Every server.
    pub servers: Vec<Server>,
    /// User regions.
    pub regions: Vec<Region>,
    /// Datasets.
    pub datasets: Vec<Dataset>,
    /// Tenants.
    pub tenants: Vec<Tenant>,
}

impl Fleet {
    /// A stable 64-bit hash of every object (FNV-1a over a canonical binary rendering that
    /// does not depend on `Debug`, serde or the standard library's hasher).
    pub fn fingerprint(&self) -> u64 {
        fingerprint::fingerprint(self)
    }

    /// Counts by kind, model and place.
    pub fn summary(&self) -> FleetSummary {
        FleetSummary::of(self)
    }
}

/// Generates the fleet `spec` describes.
///
/// ```
/// use meridian_sim::fleet::{FleetSpec, generate};
///
/// let fleet = generate(&FleetSpec::with_sites(42, 20));
/// assert_eq!(fleet.sites.len(), 20);
/// assert_eq!(fleet.fingerprint(), generate(&FleetSpec::with_sites(42, 20)).fingerprint());
/// println!("{}", fleet.summary());
/// ```
///
/// # Panics
///
/// As [`FleetSpec::counts`].
pub fn generate(spec: &FleetSpec) -> Fleet {
    let counts = spec.counts();
    let sites = sites::generate(&counts, &mut stage_rng(spec.seed, Stage::Sites));
    let servers = servers::generate(&sites, &mut stage_rng(spec.seed, Stage::Servers));
    let regions = regions::generate(counts.regions, &mut stage_rng(spec.seed, Stage::Regions));
    let tenants = tenants::generate(
        counts.tenants,
        &sites,
        &mut stage_rng(spec.seed, Stage::Tenants),
    );
    let datasets = datasets::generate(
        counts.datasets,
        &tenants,
        &sites,
        &mut stage_rng(spec.seed, Stage::Datasets),
    );
    Fleet {
        sites,
        servers,
        regions,
        datasets,
        tenants,
    }
}

/// Parses an ID or name the generator built; they are valid by construction.
fn id<T: meridian_common::ids::TypedId>(s: &str) -> T {
    match T::parse(s) {
        Ok(v) => v,
        Err(e) => panic!("generator built an invalid {}: {e}", T::KIND),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_scale_with_floors() {
        let full = FleetSpec::full(1).counts();
        assert_eq!((full.core_sites, full.edge_sites), (100, 9_900));
        assert_eq!(full.servers, 9_900 * 4 + 100 * 256);
        assert_eq!(full.gpus, full.servers * 8);
        assert_eq!(
            (full.regions, full.datasets, full.tenants),
            (200, 2_000, 500)
        );
        let tiny = FleetSpec::scaled(1, 0.001).counts();
        assert_eq!((tiny.core_sites, tiny.edge_sites), (1, 9));
        assert_eq!((tiny.regions, tiny.datasets, tiny.tenants), (5, 2, 2));
        let zero = FleetSpec::scaled(1, 0.0).counts();
        assert_eq!((zero.core_sites, zero.edge_sites), (1, 1));
        let exact = FleetSpec::with_sites(1, 1_234).counts();
        assert_eq!(exact.sites(), 1_234);
        assert_eq!(exact.core_sites, 12);
        assert_eq!(FleetSpec::with_sites(1, 1).counts().core_sites, 1);
        assert_eq!(FleetSpec::with_sites(1, 1).counts().edge_sites, 0);
        assert_eq!(FleetSpec::with_sites(1, 160).counts().core_sites, 2);
    }

    #[test]
    #[should_panic(expected = "finite")]
    fn nan_scale_is_refused() {
        let _ = FleetSpec::scaled(1, f64::NAN).counts();
    }
}
