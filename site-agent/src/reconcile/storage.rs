//! The site's external storage array as a [`Resource`]: one volume per tenant volume of the
//! intent, its size a hard quota, exported (NFS, read-write) only to the tenant's subnet at
//! this site, through the array's [`StorageArray`] driver (NetApp ONTAP's REST API).
//!
//! The want is rendered from the held intent ([`storage_want`], pure): every volume, named on
//! the array `mv_<tenant length>_<tenant>_<name>` with `-` as `_` (unambiguous, since the
//! length says where the tenant ends, and in ONTAP's name alphabet). The observation is the
//! array's volumes under the `mv_` prefix; the plan ([`plan`], pure) is one step at a time:
//! create or converge a volume that is missing or differs (size, quota, export clients), then
//! delete a volume no tenant asks for any more. A failed step goes through the one error
//! policy: the array's job failures and 5xx answers are retried, a full array or a refused
//! request fails the generation with the array's reason. Every volume's state is reported
//! (`ReportBody::Volume`) when it changes.
//!
//! [`StorageArray`]: meridian_drivers::storage::StorageArray

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use meridian_common::ids::{Generation, Name, TenantId, Timestamp};
use meridian_common::model::{ReportBody, SiteIntent};
use meridian_drivers::storage::{ArrayVolume, StorageArray, VolumeWant};

use super::resource::{Cx, NodeBook, Resource};
use super::{Action, ReconcileError};

/// The prefix of every volume the agent manages on the array.
pub const VOLUME_PREFIX: &str = "mv_";

/// The site's storage array.
#[derive(Clone)]
pub struct ManagedStorage {
    pub array: Arc<dyn StorageArray>,
}

impl fmt::Debug for ManagedStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedStorage")
            .field("array", &self.array)
            .finish()
    }
}

/// The array-side name of a tenant's volume.
pub fn array_name(tenant: &TenantId, name: &Name) -> String {
    format!(
        "{VOLUME_PREFIX}{}_{}_{}",
        tenant.as_str().len(),
        tenant.as_str().replace('-', "_"),
        name.as_str().replace('-', "_")
    )
}

/// One wanted volume with its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedVolume {
    pub tenant: TenantId,
    pub name: Name,
    pub volume: VolumeWant,
}

/// What the held intent asks of the array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageWant {
    pub generation: Generation,
    /// By array name.
    pub volumes: BTreeMap<String, WantedVolume>,
}

/// The array's volumes for `intent`. Pure. A tenant with no network at the site gets its
/// volume exported to nobody (no client may mount it) until its subnet arrives.
pub fn storage_want(intent: &SiteIntent) -> StorageWant {
    let volumes = intent
        .volumes
        .iter()
        .map(|v| {
            let clients = intent
                .networks
                .iter()
                .filter(|n| n.tenant == v.tenant)
                .map(|n| n.subnet)
                .collect();
            let name = array_name(&v.tenant, &v.name);
            (
                name.clone(),
                WantedVolume {
                    tenant: v.tenant.clone(),
                    name: v.name.clone(),
                    volume: VolumeWant {
                        name,
                        size_mib: v.size_mib,
                        clients,
                    },
                },
            )
        })
        .collect();
    StorageWant {
        generation: intent.generation,
        volumes,
    }
}

/// The array's next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageStep {
    /// Create the volume, or bring its size, quota or exports in line.
    Ensure(String),
    /// Delete a volume no tenant asks for.
    Delete(String),
    /// Every volume as wanted.
    Converged,
}

fn matches(want: &VolumeWant, seen: &ArrayVolume) -> bool {
    let mut a = want.clients.clone();
    let mut b = seen.clients.clone();
    a.sort();
    b.sort();
    seen.size_mib == want.size_mib && seen.quota_mib == Some(want.size_mib) && a == b
}

/// The next step for the array: missing or different volumes first (by name), then volumes to
/// delete. Pure.
pub fn plan(want: &StorageWant, seen: &[ArrayVolume]) -> StorageStep {
    let by_name: BTreeMap<&str, &ArrayVolume> = seen.iter().map(|v| (v.name.as_str(), v)).collect();
    for (name, w) in &want.volumes {
        if !by_name
            .get(name.as_str())
            .is_some_and(|s| matches(&w.volume, s))
        {
            return StorageStep::Ensure(name.clone());
        }
    }
    match seen
        .iter()
        .map(|v| &v.name)
        .filter(|n| n.starts_with(VOLUME_PREFIX) && !want.volumes.contains_key(n.as_str()))
        .min()
    {
        Some(n) => StorageStep::Delete(n.clone()),
        None => StorageStep::Converged,
    }
}

/// The array and what its worker remembers between passes.
#[derive(Debug)]
pub(crate) struct StorageInstance {
    storage: ManagedStorage,
    book: NodeBook,
    /// What was last reported per volume (tenant, name): (size, ready, detail).
    reported: BTreeMap<(TenantId, Name), (u64, bool, String)>,
    /// Volumes deleted in this generation (reported once gone).
    deleted: Vec<String>,
    /// The changes made towards the current generation.
    changes: Vec<String>,
}

impl StorageInstance {
    pub(crate) fn new(storage: ManagedStorage) -> Self {
        StorageInstance {
            storage,
            book: NodeBook::default(),
            reported: BTreeMap::new(),
            deleted: Vec::new(),
            changes: Vec::new(),
        }
    }

    /// The volume reports that changed since the last ones.
    fn volume_reports(&mut self, want: &StorageWant, seen: &[ArrayVolume]) -> Vec<ReportBody> {
        let by_name: BTreeMap<&str, &ArrayVolume> =
            seen.iter().map(|v| (v.name.as_str(), v)).collect();
        let mut now: BTreeMap<(TenantId, Name), (u64, bool, String)> = BTreeMap::new();
        for (name, w) in &want.volumes {
            let state = match by_name.get(name.as_str()) {
                Some(s) if matches(&w.volume, s) => (s.size_mib, true, String::new()),
                Some(s) => (s.size_mib, false, "being brought in line".to_owned()),
                None => (0, false, "not created yet".to_owned()),
            };
            now.insert((w.tenant.clone(), w.name.clone()), state);
        }
        let mut out = Vec::new();
        for (key, state) in &now {
            if self.reported.get(key) != Some(state) {
                out.push(ReportBody::Volume {
                    tenant: key.0.clone(),
                    name: key.1.clone(),
                    size_mib: state.0,
                    ready: state.1,
                    detail: state.2.clone(),
                });
            }
        }
        for (key, _) in self.reported.iter().filter(|(k, _)| !now.contains_key(*k)) {
            out.push(ReportBody::Volume {
                tenant: key.0.clone(),
                name: key.1.clone(),
                size_mib: 0,
                ready: false,
                detail: "deleted".to_owned(),
            });
        }
        self.reported = now;
        out
    }
}

fn array_error(
    step: &'static str,
) -> impl FnOnce(meridian_drivers::storage::StorageError) -> ReconcileError {
    move |source| ReconcileError::Storage { step, source }
}

#[async_trait]
impl Resource for StorageInstance {
    type Want = StorageWant;
    type Observed = Vec<ArrayVolume>;
    type Step = StorageStep;
    const KIND: &'static str = "storage";
    const DRIVER: &'static str = "storage";

    fn step_driver(step: &StorageStep) -> Option<&'static str> {
        (!matches!(step, StorageStep::Converged)).then_some(Self::DRIVER)
    }

    fn want(&self, intent: Option<&SiteIntent>, _now: Timestamp) -> Option<StorageWant> {
        intent.map(storage_want)
    }

    fn next_change(_want: &StorageWant) -> Option<Timestamp> {
        None
    }

    async fn observe(
        &mut self,
        _want: &StorageWant,
        _cx: &Cx<'_>,
    ) -> Result<Vec<ArrayVolume>, ReconcileError> {
        self.book.start_pass();
        self.storage
            .array
            .volumes(VOLUME_PREFIX)
            .await
            .map_err(array_error("list the array's volumes"))
    }

    fn plan(&self, want: &StorageWant, observed: &Vec<ArrayVolume>) -> StorageStep {
        plan(want, observed)
    }

    async fn execute(
        &mut self,
        step: StorageStep,
        want: &StorageWant,
        seen: Vec<ArrayVolume>,
        cx: &Cx<'_>,
    ) -> Result<Action, ReconcileError> {
        let reports = self.volume_reports(want, &seen);
        if !reports.is_empty() {
            cx.commit_reports(&reports, &[], "volume reports");
        }
        match step {
            StorageStep::Ensure(name) => {
                let w = &want.volumes[&name];
                let changed = self
                    .storage
                    .array
                    .ensure_volume(&w.volume)
                    .await
                    .map_err(array_error("create or resize a volume"))?;
                if !changed.is_empty() {
                    self.changes.push(format!(
                        "volume {}/{} ({name}): {}",
                        w.tenant,
                        w.name,
                        changed.join(", ")
                    ));
                }
                Ok(Action::RequeueAfter(std::time::Duration::ZERO))
            }
            StorageStep::Delete(name) => {
                if self
                    .storage
                    .array
                    .delete_volume(&name)
                    .await
                    .map_err(array_error("delete a volume"))?
                {
                    self.deleted.push(name.clone());
                    self.changes.push(format!("volume {name} deleted"));
                }
                Ok(Action::RequeueAfter(std::time::Duration::ZERO))
            }
            StorageStep::Converged => {
                let changed = std::mem::take(&mut self.changes);
                self.deleted.clear();
                self.book.converged(
                    want.generation,
                    (!changed.is_empty()).then(|| changed.join("; ")),
                );
                Ok(Action::AwaitChange)
            }
        }
    }

    fn failed(&mut self, want: &StorageWant, error: ReconcileError, cx: &Cx<'_>) -> Action {
        let action = self
            .book
            .failed(&error, want.generation, &cx.env.config.retry);
        tracing::warn!(error = %meridian_common::telemetry::error_chain(&error), failures = self.book.failures(), "storage array not in line with the intent");
        action
    }

    fn report(&mut self, _want: &StorageWant, _action: Action, cx: &Cx<'_>) {
        cx.report_events("storage", &mut self.book.events);
        if let Some(status) = self.book.outcome.take() {
            cx.env.status.send_modify(|s| s.storage = Some(status));
        }
    }
}

#[cfg(test)]
mod tests {
    use meridian_common::ids::SiteId;
    use meridian_common::model::{StorageVolume, TenantNetworkIntent};

    use super::*;

    fn id<T: meridian_common::ids::TypedId>(s: &str) -> T {
        T::parse(s).unwrap()
    }

    fn intent() -> SiteIntent {
        let mut i = SiteIntent::empty(id::<SiteId>("edge-1"), Generation::new(4));
        i.networks.push(TenantNetworkIntent {
            tenant: id("acme"),
            vni: 10_001,
            table: 1001,
            subnet: "10.64.1.0/24".parse().unwrap(),
            gateway: "10.64.1.1".parse().unwrap(),
        });
        i.volumes = vec![
            StorageVolume {
                tenant: id("acme"),
                name: id("train-data"),
                size_mib: 102_400,
            },
            StorageVolume {
                tenant: id("globex"),
                name: id("scratch"),
                size_mib: 1024,
            },
        ];
        i
    }

    fn seen(w: &VolumeWant) -> ArrayVolume {
        ArrayVolume {
            name: w.name.clone(),
            uuid: "u".into(),
            size_mib: w.size_mib,
            quota_mib: Some(w.size_mib),
            clients: w.clients.clone(),
        }
    }

    #[test]
    fn names_are_unambiguous_and_in_the_arrays_alphabet() {
        let a = array_name(&id("a-b"), &id("c"));
        let b = array_name(&id("a"), &id("b-c"));
        assert_ne!(a, b);
        assert_eq!(a, "mv_3_a_b_c");
        assert_eq!(b, "mv_1_a_b_c");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    }

    #[test]
    fn exports_go_to_the_tenants_subnet_only() {
        let w = storage_want(&intent());
        let acme = &w.volumes[&array_name(&id("acme"), &id("train-data"))];
        assert_eq!(acme.volume.size_mib, 102_400);
        assert_eq!(acme.volume.clients, vec!["10.64.1.0/24".parse().unwrap()]);
        // globex has no network here: exported to nobody.
        let globex = &w.volumes[&array_name(&id("globex"), &id("scratch"))];
        assert!(globex.volume.clients.is_empty());
    }

    #[test]
    fn plan_creates_converges_then_deletes() {
        let w = storage_want(&intent());
        let names: Vec<&String> = w.volumes.keys().collect();
        assert_eq!(plan(&w, &[]), StorageStep::Ensure(names[0].clone()));
        let mut array: Vec<ArrayVolume> = w.volumes.values().map(|v| seen(&v.volume)).collect();
        assert_eq!(plan(&w, &array), StorageStep::Converged);
        // A resize, a lost quota rule or another client each call for an ensure.
        array[0].size_mib += 1;
        assert_eq!(plan(&w, &array), StorageStep::Ensure(names[0].clone()));
        array[0].size_mib -= 1;
        array[1].quota_mib = None;
        assert_eq!(plan(&w, &array), StorageStep::Ensure(names[1].clone()));
        array[1].quota_mib = Some(array[1].size_mib);
        array[0].clients.push("10.99.0.0/16".parse().unwrap());
        assert_eq!(plan(&w, &array), StorageStep::Ensure(names[0].clone()));
        array[0].clients.pop();
        // A volume nobody asks for goes; one outside the prefix is not ours.
        array.push(ArrayVolume {
            name: "mv_3_old_gone".into(),
            uuid: "x".into(),
            size_mib: 5,
            quota_mib: Some(5),
            clients: vec![],
        });
        array.push(ArrayVolume {
            name: "vol0".into(),
            uuid: "y".into(),
            size_mib: 5,
            quota_mib: None,
            clients: vec![],
        });
        assert_eq!(
            plan(&w, &array),
            StorageStep::Delete("mv_3_old_gone".into())
        );
        array.retain(|v| v.name != "mv_3_old_gone");
        assert_eq!(plan(&w, &array), StorageStep::Converged);
    }
}
