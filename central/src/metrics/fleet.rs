//! The gauges read from the store: sites by state, intents pending, GPUs held and free by
//! model and tier. They are computed at scrape time from the sites, servers, placements,
//! intents and channel records, and cached ([`MetricsConfig::fleet_cache_ms`]): a scrape
//! within the cache's life is answered from the last computation, and concurrent scrapes
//! wait for one computation instead of each starting its own, so a scrape storm costs the
//! store one read of those tables per cache period at most.
//!
//! [`MetricsConfig::fleet_cache_ms`]: super::MetricsConfig::fleet_cache_ms

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use meridian_common::ids::{ServerId, SiteId, Timestamp};
use meridian_common::model::{Placement, Server, Site, SiteState, SiteTier};
use meridian_store::schema::{INTENTS_PREFIX, SITES_PREFIX, site_of};
use meridian_store::tables::TableError;
use meridian_store::{RangeRequest, StoreError, Tables};
use prost::Message;

use super::families::{Families, GpuLabels, StateLabel};

/// Every site state, so each has a series (0 when no site is in it).
const STATES: [SiteState; 6] = [
    SiteState::Pending,
    SiteState::Enrolled,
    SiteState::Online,
    SiteState::Disconnected,
    SiteState::Degraded,
    SiteState::Decommissioned,
];

/// Records per page when reading the tables.
const PAGE: usize = 5_000;

/// Only the generation of a stored intent (tag 2 of `SiteIntent`): the rest is skipped.
#[derive(Clone, PartialEq, prost::Message)]
struct IntentGeneration {
    #[prost(uint64, tag = "2")]
    generation: u64,
}

/// Only the acknowledged generation of a channel record (tag 1 of `SiteChannelRecord`).
#[derive(Clone, PartialEq, prost::Message)]
struct ReceivedGeneration {
    #[prost(uint64, tag = "1")]
    received_generation: u64,
}

/// GPUs of one model in one tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuCount {
    pub total: u64,
    pub held: u64,
}

/// One computation of the store-derived gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetSnapshot {
    /// Sites by state.
    pub sites: BTreeMap<SiteState, u64>,
    /// Sites whose newest intent is above the generation their agent acknowledged holding.
    pub intents_pending: u64,
    /// GPUs by (model, tier).
    pub gpus: BTreeMap<(String, SiteTier), GpuCount>,
}

fn state_label(state: SiteState) -> &'static str {
    match state {
        SiteState::Pending => "pending",
        SiteState::Enrolled => "enrolled",
        SiteState::Online => "online",
        SiteState::Disconnected => "disconnected",
        SiteState::Degraded => "degraded",
        SiteState::Decommissioned => "decommissioned",
    }
}

fn tier_label(tier: SiteTier) -> &'static str {
    match tier {
        SiteTier::Edge => "edge",
        SiteTier::Core => "core",
    }
}

/// Every value under `prefix`, in pages.
async fn raw_range(tables: &Tables, prefix: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
    let store = tables.store();
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .range(RangeRequest {
                prefix: prefix.as_bytes().to_vec(),
                start_after: after.take(),
                limit: PAGE,
            })
            .await?;
        let more = page.more;
        let last = page.kvs.last().map(|kv| kv.key.clone());
        out.extend(page.kvs.into_iter().map(|kv| (kv.key, kv.value)));
        match (more, last) {
            (true, Some(last)) => after = Some(last),
            _ => return Ok(out),
        }
    }
}

/// The GPU indices held at `now`, by (site, server) (a MIG slice holds its GPU).
fn held_gpus(
    placements: &[Placement],
    now: Timestamp,
) -> HashMap<(&SiteId, &ServerId), HashSet<u32>> {
    let mut held: HashMap<(&SiteId, &ServerId), HashSet<u32>> = HashMap::new();
    for p in placements {
        if !p.window.is_none_or(|w| w.contains(now)) {
            continue;
        }
        for a in &p.assignments {
            held.entry((&a.site, &a.server))
                .or_default()
                .extend(a.slot.gpu_indices());
        }
    }
    held
}

/// Computes the snapshot from what the tables hold at `now`.
pub async fn compute(tables: &Tables, now: Timestamp) -> Result<FleetSnapshot, TableError> {
    let sites: Vec<Site> = tables.sites().list_all(None, PAGE).await?;
    let servers: Vec<Server> = tables.servers().list_all(None, PAGE).await?;
    let placements: Vec<Placement> = tables.placements().list_all(None, PAGE).await?;
    let intents = raw_range(tables, INTENTS_PREFIX).await?;
    let channels = raw_range(tables, SITES_PREFIX).await?;
    Ok(summarise(
        &sites,
        &servers,
        &placements,
        &intents,
        &channels,
        now,
    ))
}

/// The snapshot of these records (pure; see [`compute`]).
fn summarise(
    sites: &[Site],
    servers: &[Server],
    placements: &[Placement],
    intents: &[(Vec<u8>, Vec<u8>)],
    channels: &[(Vec<u8>, Vec<u8>)],
    now: Timestamp,
) -> FleetSnapshot {
    let mut snapshot = FleetSnapshot::default();
    for s in sites {
        *snapshot.sites.entry(s.state).or_default() += 1;
    }
    let acknowledged: HashMap<SiteId, u64> = channels
        .iter()
        .filter_map(|(key, value)| {
            let site = site_of(key, SITES_PREFIX)?;
            let r = ReceivedGeneration::decode(value.as_slice()).ok()?;
            Some((site, r.received_generation))
        })
        .collect();
    snapshot.intents_pending = intents
        .iter()
        .filter_map(|(key, value)| {
            let site = site_of(key, INTENTS_PREFIX)?;
            let g = IntentGeneration::decode(value.as_slice()).ok()?;
            Some(g.generation > acknowledged.get(&site).copied().unwrap_or(0))
        })
        .filter(|pending| *pending)
        .count() as u64;
    let held = held_gpus(placements, now);
    let tiers: HashMap<&SiteId, SiteTier> = sites.iter().map(|s| (&s.id, s.tier)).collect();
    // Counted per (model, tier) by model first, so a model's name is rendered once.
    let mut counts: HashMap<(meridian_common::model::GpuModel, SiteTier), GpuCount> =
        HashMap::new();
    for server in servers {
        let Some(tier) = tiers.get(&server.site) else {
            continue;
        };
        let on_server = held.get(&(&server.site, &server.id));
        for gpu in &server.gpus {
            let count = counts.entry((gpu.model, *tier)).or_default();
            count.total += 1;
            if on_server.is_some_and(|h| h.contains(&gpu.index)) {
                count.held += 1;
            }
        }
    }
    snapshot.gpus = counts
        .into_iter()
        .map(|((model, tier), count)| ((model.to_string(), tier), count))
        .collect();
    snapshot
}

/// The store-derived gauges and their cache; see the module documentation.
#[derive(Debug)]
pub struct FleetGauges {
    tables: Tables,
    families: Families,
    ttl: Duration,
    /// When the gauges were last computed; held while computing, so concurrent scrapes wait
    /// for that computation.
    computed: tokio::sync::Mutex<Option<Instant>>,
}

impl FleetGauges {
    /// Gauges of `families` from `tables`, recomputed at most every `ttl`.
    pub fn new(tables: Tables, families: Families, ttl: Duration) -> Self {
        FleetGauges {
            tables,
            families,
            ttl,
            computed: tokio::sync::Mutex::new(None),
        }
    }

    /// Computes the gauges again unless the last computation is younger than the cache's
    /// life; true when it computed. A failed read keeps the previous values (and the next
    /// scrape tries again).
    pub async fn refresh(&self, now: Timestamp) -> Result<bool, TableError> {
        let mut computed = self.computed.lock().await;
        if computed.is_some_and(|at| at.elapsed() < self.ttl) {
            return Ok(false);
        }
        let snapshot = compute(&self.tables, now).await?;
        self.apply(&snapshot);
        *computed = Some(Instant::now());
        Ok(true)
    }

    /// Sets the gauges to `snapshot` (series of models no longer present are removed).
    pub fn apply(&self, snapshot: &FleetSnapshot) {
        let f = &self.families;
        for state in STATES {
            f.sites
                .get_or_create(&StateLabel {
                    state: state_label(state),
                })
                .set(snapshot.sites.get(&state).copied().unwrap_or(0) as i64);
        }
        f.intents_pending.set(snapshot.intents_pending as i64);
        f.gpus_held.clear();
        f.gpus_free.clear();
        for ((model, tier), count) in &snapshot.gpus {
            let labels = GpuLabels {
                model: model.clone(),
                tier: tier_label(*tier),
            };
            f.gpus_held.get_or_create(&labels).set(count.held as i64);
            f.gpus_free
                .get_or_create(&labels)
                .set(count.total.saturating_sub(count.held) as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_common::model::{Assignment, GpuSlot};
    use meridian_proto::v1 as proto;

    fn site(id: &str, tier: &str, state: &str) -> Site {
        toml::from_str(&format!(
            "id = \"{id}\"\nname = \"{id}\"\ntier = \"{tier}\"\nlocation = {{ lat = 50.1, lon = 8.6 }}\ncountry = \"DE\"\npools = [\"default\"]\ngateway_range = \"203.0.113.0/28\"\nprice_per_gpu_hour = 1000000\nstate = \"{state}\"\n"
        ))
        .unwrap()
    }

    fn server(site: &str, id: &str, gpus: usize, model: &str) -> Server {
        let gpus: String = (0..gpus)
            .map(|i| {
                format!(
                    "[[gpus]]\nindex = {i}\nmodel = \"{model}\"\nmemory_mib = 81920\nmig = \"disabled\"\nhealth = \"healthy\"\n"
                )
            })
            .collect();
        toml::from_str(&format!(
            "id = \"{id}\"\nsite = \"{site}\"\nbmc = {{ url = \"http://127.0.0.1:1\", vendor = \"generic\" }}\nserial = \"SN\"\ncpu_cores = 64\nmemory_mib = 262144\nstate = \"available\"\npool = \"default\"\n{gpus}"
        ))
        .unwrap()
    }

    fn placement(site: &str, server: &str, indices: Vec<u32>) -> Placement {
        Placement {
            workload: "wl-1".parse().unwrap(),
            tenant: "acme".parse().unwrap(),
            assignments: vec![Assignment {
                replica: 0,
                site: SiteId::parse(site).unwrap(),
                server: ServerId::parse(server).unwrap(),
                slot: GpuSlot::WholeGpus { indices },
            }],
            window: None,
            score: Default::default(),
            rejections: Default::default(),
            explanation: String::new(),
            decided_at: Timestamp::from_millis(0),
        }
    }

    fn record<M: Message>(prefix: &str, site: &str, m: M) -> (Vec<u8>, Vec<u8>) {
        (format!("{prefix}{site}").into_bytes(), m.encode_to_vec())
    }

    #[test]
    fn the_snapshot_counts_states_pending_intents_and_gpus() {
        let sites = [
            site("edge-1", "edge", "online"),
            site("edge-2", "edge", "disconnected"),
            site("core-1", "core", "online"),
        ];
        let servers = [
            server("edge-1", "e1-a", 2, "L40S"),
            server("edge-2", "e2-a", 2, "L40S"),
            server("core-1", "c1-a", 8, "H100-80GB"),
            // A server of an unknown site counts nowhere.
            server("gone-1", "g-a", 8, "H100-80GB"),
        ];
        let placements = [
            placement("core-1", "c1-a", vec![0, 1, 2]),
            placement("edge-1", "e1-a", vec![1]),
        ];
        let intents = [
            record(INTENTS_PREFIX, "edge-1", IntentGeneration { generation: 3 }),
            record(INTENTS_PREFIX, "edge-2", IntentGeneration { generation: 2 }),
            record(INTENTS_PREFIX, "core-1", IntentGeneration { generation: 1 }),
        ];
        let channels = [
            record(
                SITES_PREFIX,
                "edge-1",
                proto::SiteChannelRecord {
                    received_generation: 3,
                    ..Default::default()
                },
            ),
            record(
                SITES_PREFIX,
                "edge-2",
                proto::SiteChannelRecord {
                    received_generation: 1,
                    ..Default::default()
                },
            ),
        ];
        let s = summarise(
            &sites,
            &servers,
            &placements,
            &intents,
            &channels,
            Timestamp::from_millis(1),
        );
        assert_eq!(s.sites.get(&SiteState::Online), Some(&2));
        assert_eq!(s.sites.get(&SiteState::Disconnected), Some(&1));
        // edge-2 is behind (2 > 1), core-1 never acknowledged anything.
        assert_eq!(s.intents_pending, 2);
        assert_eq!(
            s.gpus.get(&("H100-80GB".to_owned(), SiteTier::Core)),
            Some(&GpuCount { total: 8, held: 3 })
        );
        assert_eq!(
            s.gpus.get(&("L40S".to_owned(), SiteTier::Edge)),
            Some(&GpuCount { total: 4, held: 1 })
        );
        assert_eq!(s.gpus.len(), 2);
    }

    #[test]
    fn applying_sets_every_state_and_drops_vanished_models() {
        let families = Families::default();
        let dir = tempfile::tempdir().unwrap();
        let store: std::sync::Arc<dyn meridian_store::Store> = std::sync::Arc::new(
            meridian_store::SledStore::open(dir.path(), &Default::default()).unwrap(),
        );
        let gauges = FleetGauges::new(Tables::new(store), families.clone(), Duration::from_secs(5));
        let mut s = FleetSnapshot::default();
        s.sites.insert(SiteState::Online, 7);
        s.gpus.insert(
            ("L4".to_owned(), SiteTier::Edge),
            GpuCount { total: 4, held: 1 },
        );
        gauges.apply(&s);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &families.registry())
            .unwrap();
        assert!(
            text.contains("meridian_sites{state=\"online\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("meridian_sites{state=\"degraded\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("meridian_gpus_free{model=\"L4\",tier=\"edge\"} 3"),
            "{text}"
        );
        s.gpus.clear();
        gauges.apply(&s);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &families.registry())
            .unwrap();
        assert!(!text.contains("model=\"L4\""), "{text}");
    }

    #[tokio::test]
    async fn a_scrape_within_the_cache_life_does_not_read_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store: std::sync::Arc<dyn meridian_store::Store> = std::sync::Arc::new(
            meridian_store::SledStore::open(dir.path(), &Default::default()).unwrap(),
        );
        let tables = Tables::new(store);
        tables
            .sites()
            .create(&site("edge-1", "edge", "online"))
            .await
            .unwrap();
        let families = Families::default();
        let gauges = FleetGauges::new(tables.clone(), families.clone(), Duration::from_secs(60));
        let now = Timestamp::from_millis(1);
        assert!(gauges.refresh(now).await.unwrap());
        tables
            .sites()
            .create(&site("edge-2", "edge", "online"))
            .await
            .unwrap();
        // Cached: the new site is not seen, and nothing was computed.
        assert!(!gauges.refresh(now).await.unwrap());
        let online = |f: &Families| f.sites.get_or_create(&StateLabel { state: "online" }).get();
        assert_eq!(online(&families), 1);
        let quick = FleetGauges::new(tables, families.clone(), Duration::ZERO);
        assert!(quick.refresh(now).await.unwrap());
        assert_eq!(online(&families), 2);
    }
}
