//! [`FleetSummary`]: what a fleet holds, by kind, model and place.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use meridian_common::model::{GpuModel, MigConfig, SiteTier};

use super::Fleet;
use super::geography::{Continent, country_of};

/// Counts of a [`Fleet`]'s objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSummary {
    /// Edge sites.
    pub edge_sites: usize,
    /// Core sites.
    pub core_sites: usize,
    /// Servers.
    pub servers: usize,
    /// GPUs.
    pub gpus: usize,
    /// GPUs by model.
    pub gpus_by_model: BTreeMap<GpuModel, usize>,
    /// MIG-capable GPUs (edge and core).
    pub mig_capable_gpus: usize,
    /// GPUs at edge sites.
    pub edge_gpus: usize,
    /// MIG-capable GPUs at edge sites.
    pub mig_capable_edge_gpus: usize,
    /// GPUs with MIG enabled.
    pub mig_enabled_gpus: usize,
    /// User regions.
    pub regions: usize,
    /// Datasets.
    pub datasets: usize,
    /// Dataset replicas over all datasets.
    pub dataset_replicas: usize,
    /// Bytes over all datasets (one copy each).
    pub dataset_bytes: u128,
    /// Tenants.
    pub tenants: usize,
    /// Countries with at least one site.
    pub countries: usize,
    /// Continents with at least one site.
    pub continents: usize,
}

impl FleetSummary {
    /// Counts `fleet`.
    pub fn of(fleet: &Fleet) -> Self {
        let edge_sites = fleet
            .sites
            .iter()
            .filter(|s| s.tier == SiteTier::Edge)
            .count();
        let edge_site_ids: BTreeSet<&str> = fleet
            .sites
            .iter()
            .filter(|s| s.tier == SiteTier::Edge)
            .map(|s| s.id.as_str())
            .collect();
        let mut gpus_by_model = BTreeMap::new();
        let (mut gpus, mut mig_capable, mut edge_gpus, mut edge_mig, mut mig_on) = (0, 0, 0, 0, 0);
        for server in &fleet.servers {
            let edge = edge_site_ids.contains(server.site.as_str());
            for gpu in &server.gpus {
                gpus += 1;
                *gpus_by_model.entry(gpu.model).or_insert(0) += 1;
                let capable = gpu.model.is_mig_capable();
                mig_capable += usize::from(capable);
                if edge {
                    edge_gpus += 1;
                    edge_mig += usize::from(capable);
                }
                mig_on += usize::from(matches!(gpu.mig, MigConfig::Enabled { .. }));
            }
        }
        let countries: BTreeSet<_> = fleet.sites.iter().map(|s| s.country).collect();
        let continents: BTreeSet<Continent> = countries
            .iter()
            .filter_map(|c| country_of(*c).map(|c| c.continent))
            .collect();
        Self {
            edge_sites,
            core_sites: fleet.sites.len() - edge_sites,
            servers: fleet.servers.len(),
            gpus,
            gpus_by_model,
            mig_capable_gpus: mig_capable,
            edge_gpus,
            mig_capable_edge_gpus: edge_mig,
            mig_enabled_gpus: mig_on,
            regions: fleet.regions.len(),
            datasets: fleet.datasets.len(),
            dataset_replicas: fleet.datasets.iter().map(|d| d.replicas.len()).sum(),
            dataset_bytes: fleet
                .datasets
                .iter()
                .map(|d| u128::from(d.size_bytes))
                .sum(),
            tenants: fleet.tenants.len(),
            countries: countries.len(),
            continents: continents.len(),
        }
    }
}

impl fmt::Display for FleetSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sites: {} ({} edge, {} core) in {} countries on {} continents",
            self.edge_sites + self.core_sites,
            self.edge_sites,
            self.core_sites,
            self.countries,
            self.continents
        )?;
        writeln!(f, "servers: {}", self.servers)?;
        let models: Vec<String> = self
            .gpus_by_model
            .iter()
            .map(|(m, n)| format!("{m} {n}"))
            .collect();
        writeln!(f, "gpus: {} ({})", self.gpus, models.join(", "))?;
        writeln!(
            f,
            "mig: {} capable ({} of {} edge GPUs), {} enabled",
            self.mig_capable_gpus,
            self.mig_capable_edge_gpus,
            self.edge_gpus,
            self.mig_enabled_gpus
        )?;
        writeln!(f, "regions: {}", self.regions)?;
        writeln!(
            f,
            "datasets: {} ({} replicas, {:.1} TB)",
            self.datasets,
            self.dataset_replicas,
            self.dataset_bytes as f64 / 1e12
        )?;
        write!(f, "tenants: {}", self.tenants)
    }
}
