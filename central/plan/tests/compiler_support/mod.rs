//! Hand-built fleets for the compiler's snapshot and publish tests.

#![allow(dead_code)]

use std::collections::BTreeMap;

use meridian_common::ids::{SiteId, TenantId, TimeWindow, Timestamp, WorkloadId};
use meridian_common::model::{
    Assignment, GpuSlot, MigProfile, Placement, ReservationState, Server, Site, SiteIntent, Tenant,
    Workload, WorkloadSpec,
};
use meridian_plan::compiler::{CompileInput, Compiled, PlacedWorkload, SiteInput};
use serde::Serialize;

/// The scenarios' "now".
pub const NOW: Timestamp = Timestamp(1_700_000_000_000);
/// One hour in ms.
pub const HOUR: i64 = 3_600_000;

pub fn site(id: &str, gateway_range: &str) -> Site {
    toml::from_str(&format!(
        r#"
        id = "{id}"
        name = "{id}"
        tier = "core"
        location = {{ lat = 50.11, lon = 8.68 }}
        country = "DE"
        pools = ["default", "training"]
        gateway_range = "{gateway_range}"
        price_per_gpu_hour = 2500000
        state = "online"
        "#
    ))
    .expect("site parses")
}

/// A server with `gpus` H100s (`mig` ones MIG-enabled, listed first).
pub fn server(site: &str, id: &str, gpus: u32, mig: u32, pool: Option<&str>) -> Server {
    let mut text = format!(
        r#"
        id = "{id}"
        site = "{site}"
        bmc = {{ url = "https://10.0.0.5", vendor = "dell" }}
        serial = "SN-{id}"
        cpu_cores = 64
        memory_mib = 1048576
        state = "available"
        "#
    );
    if let Some(pool) = pool {
        text.push_str(&format!("pool = \"{pool}\"\n"));
    }
    for index in 0..gpus {
        let mig = if index < mig {
            "{ enabled = { instances = [] } }"
        } else {
            "\"disabled\""
        };
        text.push_str(&format!(
            "[[gpus]]\nindex = {index}\nmodel = \"H100-80GB\"\nmemory_mib = 81920\nmig = {mig}\nhealth = \"healthy\"\n"
        ));
    }
    toml::from_str(&text).expect("server parses")
}

pub fn tenant(id: &str) -> Tenant {
    toml::from_str(&format!("id = \"{id}\"\nname = \"{id}\"")).expect("tenant parses")
}

/// A workload from a spec in TOML (name, kind, replicas and resources at least).
pub fn workload(tenant: &str, id: &str, state: ReservationState, spec: &str) -> Workload {
    let spec: WorkloadSpec = toml::from_str(spec).expect("spec parses");
    Workload {
        id: id.parse().unwrap(),
        tenant: tenant.parse().unwrap(),
        spec,
        state,
        created_at: Timestamp(NOW.0 - HOUR),
    }
}

pub fn whole(replica: u32, site: &str, server: &str, gpus: &[u32]) -> Assignment {
    Assignment {
        replica,
        site: site.parse().unwrap(),
        server: server.parse().unwrap(),
        slot: GpuSlot::WholeGpus {
            indices: gpus.to_vec(),
        },
    }
}

pub fn mig(replica: u32, site: &str, server: &str, gpu: u32, profile: &str, at: u8) -> Assignment {
    Assignment {
        replica,
        site: site.parse().unwrap(),
        server: server.parse().unwrap(),
        slot: GpuSlot::Mig {
            gpu_index: gpu,
            profile: MigProfile::parse_any(profile).unwrap(),
            placement: at,
        },
    }
}

pub fn no_gpu(replica: u32, site: &str, server: &str) -> Assignment {
    Assignment {
        replica,
        site: site.parse().unwrap(),
        server: server.parse().unwrap(),
        slot: GpuSlot::None,
    }
}

pub fn window(start_hours: i64, end_hours: i64) -> Option<TimeWindow> {
    Some(
        TimeWindow::new(
            NOW.saturating_add_millis(start_hours * HOUR),
            NOW.saturating_add_millis(end_hours * HOUR),
        )
        .unwrap(),
    )
}

pub fn placement(w: &Workload, assignments: Vec<Assignment>) -> Placement {
    Placement {
        workload: w.id.clone(),
        tenant: w.tenant.clone(),
        assignments,
        window: w.spec.window,
        score: Default::default(),
        rejections: Default::default(),
        explanation: String::new(),
        decided_at: NOW,
    }
}

/// A fleet: sites with servers, tenants, workloads and placements.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    pub sites: Vec<Site>,
    pub servers: Vec<Server>,
    pub tenants: Vec<Tenant>,
    pub workloads: Vec<Workload>,
    pub placements: Vec<Placement>,
}

impl Fleet {
    /// Two sites: `fra-1` (a /24 gateway range; servers `srv-1` with 8 GPUs, `srv-2` with 2
    /// MIG GPUs, `srv-3` with 4 GPUs, `cpu-1` without) and `edge-1` (a /30: one public
    /// address; server `e-1` with 2 GPUs); tenants `acme` and `globex`.
    pub fn standard() -> Self {
        Fleet {
            sites: vec![
                site("fra-1", "203.0.113.0/24"),
                site("edge-1", "198.51.100.0/30"),
            ],
            servers: vec![
                server("fra-1", "srv-1", 8, 0, Some("default")),
                server("fra-1", "srv-2", 2, 2, Some("training")),
                server("fra-1", "srv-3", 4, 0, None),
                server("fra-1", "cpu-1", 0, 0, None),
                server("edge-1", "e-1", 2, 0, Some("default")),
            ],
            tenants: vec![tenant("acme"), tenant("globex")],
            ..Fleet::default()
        }
    }

    /// Adds a workload and its placement.
    pub fn place(&mut self, w: Workload, assignments: Vec<Assignment>) -> &mut Self {
        self.placements.push(placement(&w, assignments));
        self.workloads.push(w);
        self
    }

    /// The compiler input, every site with its previous intent from `previous`.
    pub fn input(&self, now: Timestamp, previous: &[SiteIntent]) -> CompileInput {
        let mut sites = BTreeMap::new();
        for s in &self.sites {
            sites.insert(
                s.id.clone(),
                SiteInput {
                    site: s.clone(),
                    servers: self
                        .servers
                        .iter()
                        .filter(|v| v.site == s.id)
                        .cloned()
                        .collect(),
                    previous: previous.iter().find(|i| i.site == s.id).cloned(),
                    actions: Vec::new(),
                },
            );
        }
        let mut workloads = BTreeMap::new();
        for w in &self.workloads {
            let placement = self
                .placements
                .iter()
                .find(|p| p.workload == w.id && p.tenant == w.tenant)
                .cloned();
            workloads.insert(
                (w.tenant.clone(), w.id.clone()),
                PlacedWorkload {
                    workload: w.clone(),
                    placement,
                },
            );
        }
        CompileInput {
            peer_ranges: Default::default(),
            now,
            sites,
            tenants: self
                .tenants
                .iter()
                .map(|t| (t.id.clone(), t.clone()))
                .collect(),
            workloads,
        }
    }

    pub fn workload_mut(&mut self, id: &str) -> &mut Workload {
        self.workloads
            .iter_mut()
            .find(|w| w.id.as_str() == id)
            .expect("workload")
    }

    pub fn remove_workload(&mut self, tenant: &TenantId, id: &WorkloadId) {
        self.workloads
            .retain(|w| !(w.tenant == *tenant && w.id == *id));
        self.placements
            .retain(|p| !(p.tenant == *tenant && p.workload == *id));
    }
}

/// What a snapshot file holds.
#[derive(Debug, Serialize)]
struct Snapshot {
    unchanged: Vec<String>,
    held_back: Vec<String>,
    unmet: Vec<String>,
    intents: Vec<SiteIntent>,
}

/// Renders a compilation for a snapshot file.
pub fn render(compiled: &Compiled) -> String {
    let snap = Snapshot {
        unchanged: compiled.unchanged.iter().map(SiteId::to_string).collect(),
        held_back: compiled
            .held_back
            .iter()
            .map(|h| format!("{}: {:?}", h.site, h.error.fields()))
            .collect(),
        unmet: compiled
            .unmet
            .iter()
            .map(|u| {
                format!(
                    "{}/{} replica {} on {}: {}",
                    u.replica.tenant,
                    u.replica.workload,
                    u.replica.replica,
                    u.replica.site,
                    u.reason
                )
            })
            .collect(),
        intents: compiled.intents.clone(),
    };
    toml::to_string(&snap).expect("a compilation renders as TOML")
}

/// Compares `actual` with `tests/snapshots/{name}.toml`. With `UPDATE_SNAPSHOTS=1` (or when the
/// file does not exist yet) the file is written instead; a new file still fails the test so
/// that it is reviewed before it is committed.
pub fn assert_snapshot(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.toml"));
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1");
    match std::fs::read_to_string(&path) {
        Ok(expected) if !update => {
            if expected != actual {
                let diff: Vec<String> = expected
                    .lines()
                    .zip(actual.lines())
                    .enumerate()
                    .filter(|(_, (e, a))| e != a)
                    .take(10)
                    .map(|(i, (e, a))| format!("line {}:\n  - {e}\n  + {a}", i + 1))
                    .collect();
                panic!(
                    "snapshot {name} differs ({} vs {} lines); first differences:\n{}\n\nactual:\n{actual}\n\
                     rerun with UPDATE_SNAPSHOTS=1 to accept",
                    expected.lines().count(),
                    actual.lines().count(),
                    diff.join("\n")
                );
            }
        }
        Ok(_) => std::fs::write(&path, actual).expect("write snapshot"),
        Err(_) => {
            std::fs::write(&path, actual).expect("write snapshot");
            assert!(
                update,
                "new snapshot {} written; review it and rerun",
                path.display()
            );
        }
    }
}
