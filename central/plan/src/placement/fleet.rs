//! The planner's indexed copy of the fleet: sites with their storage arrays, servers with GPU
//! calendars (and whether they are drained), the RTT table, datasets and the
//! per-(hardware, country, tier) site lists the filters walk.

use std::collections::{BTreeMap, HashMap};

use meridian_common::ids::{DatasetId, RegionId, ServerId, SiteId, TenantId};
use meridian_common::model::{
    Certification, Dataset, GpuModel, Jurisdiction, ResidencyRule, Site, SiteState, SiteTier,
};

use super::PlacementError;
use super::capacity::{ServerCell, StorageCell};
use super::latency::{LatencyModel, RttTable};
use super::snapshot::FleetSnapshot;

/// Every GPU model, in a fixed order: a model's position is its index in hardware keys.
pub(crate) const MODELS: [GpuModel; 8] = [
    GpuModel::A100_40GB,
    GpuModel::A100_80GB,
    GpuModel::H100_80GB,
    GpuModel::H100_94GB,
    GpuModel::H200_141GB,
    GpuModel::A30_24GB,
    GpuModel::L40S,
    GpuModel::L4,
];

/// Hardware keys: `2 * model + mig` for GPUs, and one for "any site" (no accelerator).
pub(crate) const KEYS: usize = MODELS.len() * 2 + 1;
pub(crate) const NO_GPU_KEY: u8 = (MODELS.len() * 2) as u8;
/// The bit of [`HotSite::keys`] that says the site has a storage array (the hardware keys use
/// the low bits).
pub(crate) const STORAGE_BIT: u32 = 1 << 31;
const _: () = assert!(KEYS < 31, "hardware keys and the storage bit share one u32");

pub(crate) fn model_index(model: GpuModel) -> usize {
    MODELS
        .iter()
        .position(|m| *m == model)
        .expect("MODELS lists every GpuModel")
}

pub(crate) fn hardware_key(model: GpuModel, mig: bool) -> u8 {
    (model_index(model) * 2 + usize::from(mig)) as u8
}

pub(crate) fn tier_index(tier: SiteTier) -> usize {
    match tier {
        SiteTier::Edge => 0,
        SiteTier::Core => 1,
    }
}

pub(crate) fn cert_bit(c: Certification) -> u8 {
    1 << (c as u8)
}

/// A set of country indices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CountrySet([u64; 4]);

impl CountrySet {
    pub fn insert(&mut self, c: u16) {
        self.0[usize::from(c / 64)] |= 1 << (c % 64);
    }
    pub fn all(countries: usize) -> Self {
        let mut set = CountrySet::default();
        for c in 0..countries {
            set.insert(c as u16);
        }
        set
    }
    pub fn intersect(&mut self, other: &CountrySet) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a &= b;
        }
    }
    pub fn contains(&self, c: u16) -> bool {
        self.0[usize::from(c / 64)] & (1 << (c % 64)) != 0
    }
}

/// A site as the planner sees it (the fields filters do not read every time).
#[derive(Debug, Clone)]
pub(crate) struct SiteCell {
    pub id: SiteId,
    pub servers: Vec<u32>,
    /// Usable GPUs per hardware key (for the no-GPU key: the number of servers).
    pub capacity: [u32; KEYS],
    /// The storage array and the volumes booked on it.
    pub storage: StorageCell,
}

/// What every filter reads of a site, packed in 16 bytes so a scan over thousands of sites
/// stays in cache.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HotSite {
    pub price: u64,
    /// Hardware keys with at least one usable GPU, as bits, and [`STORAGE_BIT`] when the site
    /// has a storage array.
    pub keys: u32,
    pub country: u16,
    pub tier: u8,
    pub certs: u8,
}

impl HotSite {
    pub fn has(&self, key: u8) -> bool {
        self.keys & (1 << key) != 0
    }

    /// Whether the site has hardware `key` and, when `storage` is asked for, a storage array.
    pub fn has_all(&self, key: u8, storage: bool) -> bool {
        let want = (1 << key) | if storage { STORAGE_BIT } else { 0 };
        self.keys & want == want
    }
}

/// A dataset (filed under its tenant): how big, where its replicas are, where it may go.
#[derive(Debug, Clone)]
pub(crate) struct DatasetCell {
    pub size: u64,
    pub replicas: Vec<u32>,
    pub residency: ResidencyRule,
}

/// The indexed fleet.
#[derive(Debug, Clone)]
pub(crate) struct FleetIndex {
    pub sites: Vec<SiteCell>,
    pub hot: Vec<HotSite>,
    /// Whether each site is `Online` (the only state that takes new placements).
    pub online: Vec<bool>,
    pub site_ix: HashMap<SiteId, u32>,
    pub servers: Vec<ServerCell>,
    pub server_ix: HashMap<ServerId, u32>,
    pub region_ix: HashMap<RegionId, u32>,
    /// Region IDs by index.
    pub region_ids: Vec<RegionId>,
    pub rtt: RttTable,
    pub countries: Vec<Jurisdiction>,
    /// Sites per (country, tier).
    pub country_tier_sites: Vec<[u32; 2]>,
    /// Sites with hardware `key`, by (key, country, tier), in site order.
    pub lists: BTreeMap<(u8, u16, u8), Vec<u32>>,
    /// The lengths of `lists`, flat: `[(key * countries + country) * 2 + tier]`.
    pub list_len: Vec<u32>,
    /// The same, counting only sites with a storage array.
    pub list_len_storage: Vec<u32>,
    /// Datasets by tenant, then ID (dataset IDs are scoped per tenant).
    pub datasets: HashMap<TenantId, HashMap<DatasetId, DatasetCell>>,
    pub max_price: u64,
    /// Per site and hardware key, how full its fullest server (whole GPUs booked at any time)
    /// or fullest MIG GPU (compute slices booked at any time) is: an upper bound on the
    /// packing a new slot there can reach, kept current on every booking and release.
    pub fill: Vec<[u16; KEYS]>,
    /// Per site and whole-GPU key, the fewest usable GPUs of the key on one of its servers.
    pub min_total: Vec<[u16; KEYS]>,
}

/// A server's contribution to its site's `fill`.
fn server_fill(server: &ServerCell) -> [u16; KEYS] {
    let mut fill = [0u16; KEYS];
    for gpu in server.gpus.iter().filter(|g| !g.bookings.is_empty()) {
        let key = usize::from(hardware_key(gpu.model, gpu.mig));
        if gpu.mig {
            let used: u16 = gpu
                .bookings
                .iter()
                .map(|b| match b.hold {
                    super::capacity::Hold::Mig { compute, .. } => u16::from(compute),
                    super::capacity::Hold::Whole => 7,
                })
                .sum();
            fill[key] = fill[key].max(used);
        } else {
            fill[key] += 1;
        }
    }
    fill
}

fn bad(message: String) -> PlacementError {
    PlacementError::BadSnapshot(message)
}

impl FleetIndex {
    pub fn build(
        snapshot: &FleetSnapshot,
        latency: &LatencyModel,
    ) -> Result<FleetIndex, PlacementError> {
        let mut ordered: Vec<&Site> = snapshot.sites.iter().collect();
        ordered.sort_by(|a, b| a.id.cmp(&b.id));
        let mut countries: Vec<Jurisdiction> = ordered.iter().map(|s| s.country).collect();
        countries.sort();
        countries.dedup();
        let country_of = |j: Jurisdiction| {
            countries
                .binary_search(&j)
                .expect("every site country is listed") as u16
        };
        let mut site_ix = HashMap::with_capacity(ordered.len());
        let mut sites = Vec::with_capacity(ordered.len());
        let mut hot = Vec::with_capacity(ordered.len());
        let mut online = Vec::with_capacity(ordered.len());
        let mut country_tier_sites = vec![[0u32; 2]; countries.len()];
        for (i, site) in ordered.iter().enumerate() {
            if site_ix.insert(site.id.clone(), i as u32).is_some() {
                return Err(bad(format!("site {} appears twice", site.id)));
            }
            let country = country_of(site.country);
            country_tier_sites[usize::from(country)][tier_index(site.tier)] += 1;
            sites.push(SiteCell {
                id: site.id.clone(),
                servers: Vec::new(),
                capacity: [0u32; KEYS],
                storage: StorageCell {
                    total: site.storage_mib,
                    bookings: Vec::new(),
                },
            });
            hot.push(HotSite {
                price: site.price_per_gpu_hour,
                keys: if site.storage_mib > 0 { STORAGE_BIT } else { 0 },
                country,
                tier: tier_index(site.tier) as u8,
                certs: site.certifications.iter().fold(0, |m, c| m | cert_bit(*c)),
            });
            online.push(site.state == SiteState::Online);
        }
        let mut servers = Vec::with_capacity(snapshot.servers.len());
        let mut server_ix = HashMap::with_capacity(snapshot.servers.len());
        let mut ordered_servers: Vec<_> = snapshot.servers.iter().collect();
        ordered_servers.sort_by(|a, b| (&a.site, &a.id).cmp(&(&b.site, &b.id)));
        for server in ordered_servers {
            let Some(&site) = site_ix.get(&server.site) else {
                return Err(bad(format!(
                    "server {} is at unknown site {}",
                    server.id, server.site
                )));
            };
            let at = servers.len() as u32;
            if server_ix.insert(server.id.clone(), at).is_some() {
                return Err(bad(format!("server {} appears twice", server.id)));
            }
            let mut cell = ServerCell::from_model(server, site);
            cell.drained = snapshot.drained.contains(&server.id);
            let site_cell = &mut sites[site as usize];
            site_cell.capacity[usize::from(NO_GPU_KEY)] += 1;
            for gpu in cell.gpus.iter().filter(|g| g.usable) {
                site_cell.capacity[usize::from(hardware_key(gpu.model, gpu.mig))] += 1;
            }
            site_cell.servers.push(at);
            servers.push(cell);
        }
        if let Some(unknown) = snapshot
            .drained
            .iter()
            .find(|s| !server_ix.contains_key(*s))
        {
            return Err(bad(format!("drained server {unknown} does not exist")));
        }
        let mut lists: BTreeMap<(u8, u16, u8), Vec<u32>> = BTreeMap::new();
        for (i, site) in sites.iter().enumerate() {
            let h = &mut hot[i];
            for key in 0..KEYS {
                if site.capacity[key] > 0 {
                    h.keys |= 1 << key;
                    lists
                        .entry((key as u8, h.country, h.tier))
                        .or_default()
                        .push(i as u32);
                }
            }
        }
        let mut list_len = vec![0u32; KEYS * countries.len() * 2];
        let mut list_len_storage = vec![0u32; KEYS * countries.len() * 2];
        for ((key, country, tier), list) in &lists {
            let at = (usize::from(*key) * countries.len() + usize::from(*country)) * 2
                + usize::from(*tier);
            list_len[at] = list.len() as u32;
            list_len_storage[at] = list
                .iter()
                .filter(|s| hot[**s as usize].keys & STORAGE_BIT != 0)
                .count() as u32;
        }
        let mut region_ix = HashMap::with_capacity(snapshot.regions.len());
        for (i, region) in snapshot.regions.iter().enumerate() {
            if region_ix.insert(region.id.clone(), i as u32).is_some() {
                return Err(bad(format!("region {} appears twice", region.id)));
            }
        }
        let region_points: Vec<_> = snapshot.regions.iter().map(|r| r.location).collect();
        let site_points: Vec<_> = ordered.iter().map(|s| s.location).collect();
        let mut rtt = RttTable::estimate(latency, &region_points, &site_points);
        for m in &snapshot.rtts {
            let (Some(&s), Some(&r)) = (site_ix.get(&m.site), region_ix.get(&m.region)) else {
                return Err(bad(format!(
                    "measured RTT for unknown site {} or region {}",
                    m.site, m.region
                )));
            };
            if !(m.rtt_ms.is_finite() && m.rtt_ms >= 0.0) {
                return Err(bad(format!("measured RTT {} is not a duration", m.rtt_ms)));
            }
            rtt.set_measured(r, s, m.rtt_ms as f32);
        }
        let mut datasets: HashMap<TenantId, HashMap<DatasetId, DatasetCell>> = HashMap::new();
        for d in &snapshot.datasets {
            datasets
                .entry(d.tenant.clone())
                .or_default()
                .insert(d.id.clone(), dataset_cell(d, &site_ix)?);
        }
        let max_price = hot.iter().map(|s| s.price).max().unwrap_or(0);
        let mut min_total = vec![[u16::MAX; KEYS]; sites.len()];
        for server in &servers {
            let mut per_key = [0u16; KEYS];
            for gpu in server.gpus.iter().filter(|g| g.usable && !g.mig) {
                per_key[usize::from(hardware_key(gpu.model, false))] += 1;
            }
            let site_min = &mut min_total[server.site as usize];
            for key in 0..KEYS {
                if per_key[key] > 0 {
                    site_min[key] = site_min[key].min(per_key[key]);
                }
            }
        }
        let fill = vec![[0u16; KEYS]; sites.len()];
        Ok(FleetIndex {
            sites,
            hot,
            online,
            site_ix,
            servers,
            server_ix,
            region_ix,
            region_ids: snapshot.regions.iter().map(|r| r.id.clone()).collect(),
            rtt,
            countries,
            country_tier_sites,
            lists,
            list_len,
            list_len_storage,
            datasets,
            max_price,
            fill,
            min_total,
        })
    }

    /// Raises the site's fill after a booking on server `sv`.
    pub fn raise_fill(&mut self, sv: u32) {
        let server = &self.servers[sv as usize];
        let add = server_fill(server);
        let fill = &mut self.fill[server.site as usize];
        for (f, a) in fill.iter_mut().zip(add) {
            *f = (*f).max(a);
        }
    }

    /// Recomputes a site's fill after releases.
    pub fn refresh_fill(&mut self, site: u32) {
        let mut fill = [0u16; KEYS];
        for &sv in &self.sites[site as usize].servers {
            for (f, a) in fill.iter_mut().zip(server_fill(&self.servers[sv as usize])) {
                *f = (*f).max(a);
            }
        }
        self.fill[site as usize] = fill;
    }

    /// How many sites of `country` and `tier` have hardware `key` (and, with `storage`, a
    /// storage array).
    pub fn sites_with(&self, key: u8, storage: bool, country: u16, tier: usize) -> u32 {
        let at = (usize::from(key) * self.countries.len() + usize::from(country)) * 2 + tier;
        if storage {
            self.list_len_storage[at]
        } else {
            self.list_len[at]
        }
    }

    /// The country indices a residency rule allows.
    pub fn allowed(&self, rule: &ResidencyRule) -> CountrySet {
        let mut set = CountrySet::default();
        for (i, c) in self.countries.iter().enumerate() {
            if rule.allows(*c) {
                set.insert(i as u16);
            }
        }
        set
    }
}

pub(crate) fn dataset_cell(
    d: &Dataset,
    site_ix: &HashMap<SiteId, u32>,
) -> Result<DatasetCell, PlacementError> {
    let mut replicas = Vec::with_capacity(d.replicas.len());
    for r in &d.replicas {
        let Some(&s) = site_ix.get(r) else {
            return Err(bad(format!(
                "dataset {} has a replica at unknown site {r}",
                d.id
            )));
        };
        replicas.push(s);
    }
    Ok(DatasetCell {
        size: d.size_bytes,
        replicas,
        residency: d.residency.clone(),
    })
}
