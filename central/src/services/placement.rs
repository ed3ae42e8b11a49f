//! The placement service: tenants' workloads, dry runs and watches.

use std::sync::Arc;

use std::collections::BTreeSet;

use meridian_common::ids::{SiteId, Timestamp, WorkloadId};
use meridian_common::model::{
    Exposure, Placement, ReservationState, Tenant, Workload, WorkloadEndpoint, WorkloadSpec,
};
use meridian_common::validate::validate_workload_spec;
use meridian_plan::placement::{Decision, PlacementRequest};
use meridian_store::tables::{Record, Table, TableError, TableKeyDyn};
use tokio_stream::Stream;

use super::access::{Caller, Scope};
use super::error::ApiError;
use super::pages::{self, PageRequest};
use super::{Call, Services, acting_tenant, tenant_filter};
use crate::accounts::fresh_id;
use crate::lifecycle::DryRunError;

/// One change of a watched workload: its state and placement now.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadUpdate {
    /// When central saw it.
    pub at: Timestamp,
    /// The workload.
    pub workload: Workload,
    /// Its placement, once it has one.
    pub placement: Option<Placement>,
    /// The state in words (`approved`, `failed: ...`).
    pub message: String,
}

/// One workload as `GetWorkload` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadView {
    pub workload: Workload,
    /// Absent until the planner placed it.
    pub placement: Option<Placement>,
    /// Its published endpoints, as the sites' intents carry them.
    pub endpoints: Vec<WorkloadEndpoint>,
}

/// A page of workloads with the placements of those that have one.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadPage {
    pub workloads: Vec<Workload>,
    pub placements: Vec<Placement>,
    /// Resumes the listing after this page; empty on the last page.
    pub next_page_token: String,
}

impl Services {
    /// A workload by id, if the caller may see it.
    pub(super) async fn find_workload(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(Workload, meridian_store::Revision), ApiError> {
        let id = WorkloadId::parse(id).map_err(|e| ApiError::invalid("id", e.to_string()))?;
        let tenant = match caller.scope() {
            Scope::Tenant(t) => t.clone(),
            Scope::All => {
                self.tables
                    .workload_index()
                    .get(&id)
                    .await?
                    .ok_or_else(|| ApiError::not_found("workload", &id))?
                    .record
                    .tenant
            }
        };
        let found = self.tables.workloads().get(&(&tenant, &id)).await?;
        found
            .map(|v| (v.record, v.revision))
            .ok_or_else(|| ApiError::not_found("workload", &id))
    }

    /// Validates and checks a submitted spec for `tenant` on behalf of `caller`.
    async fn checked_spec(
        &self,
        caller: &Caller,
        tenant: &Tenant,
        spec: WorkloadSpec,
    ) -> Result<WorkloadSpec, ApiError> {
        validate_workload_spec(&spec).map_err(|e| ApiError::validation("spec", e))?;
        if caller.tenant.is_some() {
            if spec.constraints.pin_server.is_some() {
                return Err(ApiError::PermissionDenied(
                    "spec.constraints.pin_server: only provider operators may pin a server".into(),
                ));
            }
            if spec.priority > tenant.max_priority {
                return Err(ApiError::PermissionDenied(format!(
                    "spec.priority: {} is above this tenant's cap of {}; ask the provider to raise it",
                    spec.priority, tenant.max_priority
                )));
            }
        }
        for (i, dataset) in spec.constraints.datasets.iter().enumerate() {
            if self
                .tables
                .datasets()
                .get(&(&tenant.id, dataset))
                .await?
                .is_none()
            {
                return Err(ApiError::invalid(
                    format!("spec.constraints.datasets[{i}]"),
                    format!("dataset {dataset} not found"),
                ));
            }
        }
        Ok(spec)
    }

    /// Submits `spec` for `tenant` (empty: the caller's own); the workload starts `pending`
    /// and the lifecycle places it.
    pub async fn create_workload(
        &self,
        call: Call<'_>,
        tenant: &str,
        spec: WorkloadSpec,
    ) -> Result<Workload, ApiError> {
        let result = async {
            let caller = call.caller();
            let tenant_id = acting_tenant(caller, tenant, "tenant")?;
            let tenant = self.tenant_record(&tenant_id).await?;
            let spec = self.checked_spec(caller, &tenant, spec).await?;
            let workload = Workload {
                id: WorkloadId::parse(&fresh_id("wl"))
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
                tenant: tenant_id,
                spec,
                state: ReservationState::Pending,
                created_at: self.clock.now(),
            };
            if let Err(e) = self.tables.workloads().create(&workload).await {
                return Err(match e {
                    TableError::AlreadyExists { .. } => {
                        ApiError::Conflict(format!("workload {}", workload.id))
                    }
                    other => other.into(),
                });
            }
            self.lifecycle.wake();
            Ok(workload)
        }
        .await;
        let object = result
            .as_ref()
            .map(|w| format!("workload/{}", w.id))
            .unwrap_or_else(|_| "workload".into());
        call.finish(&object, result).await
    }

    /// A workload, its placement if it has one, and its published endpoints.
    pub async fn get_workload(&self, call: Call<'_>, id: &str) -> Result<WorkloadView, ApiError> {
        let (workload, _) = self.find_workload(call.caller(), id).await?;
        let placement = self.placement_of(&workload).await?;
        let endpoints = self.endpoints_of(&workload, placement.as_ref()).await?;
        Ok(WorkloadView {
            workload,
            placement,
            endpoints,
        })
    }

    /// The workload's published endpoints: the exposures its placement's sites' intents carry
    /// for it, each with whether its site applied that intent, and with `[dns]` the name whose
    /// A records list the addresses of the endpoints whose sites publish them.
    async fn endpoints_of(
        &self,
        w: &Workload,
        placement: Option<&Placement>,
    ) -> Result<Vec<WorkloadEndpoint>, ApiError> {
        let Some(p) = placement else {
            return Ok(Vec::new());
        };
        let sites: BTreeSet<&SiteId> = p.assignments.iter().map(|a| &a.site).collect();
        let dns_name = self
            .dns_zone
            .as_deref()
            .map(|zone| crate::dns::names::endpoint_name(zone, &w.tenant, &w.id));
        let mut out = Vec::new();
        for site in sites {
            let Some(intent) = self.tables.intents().get(site).await? else {
                continue;
            };
            let intent = intent.record;
            let mine: Vec<&Exposure> = intent
                .exposures
                .iter()
                .filter(|e| e.tenant == w.tenant && e.workload == w.id)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let channel =
                meridian_store::schema::site_channel(self.tables.store().as_ref(), site).await?;
            let applied = channel.applied_generation >= intent.generation;
            out.extend(mine.into_iter().map(|e| WorkloadEndpoint {
                site: site.clone(),
                exposure: e.clone(),
                generation: intent.generation,
                applied,
                dns_name: dns_name.clone(),
            }));
        }
        Ok(out)
    }

    /// A page of the workloads the caller sees (one tenant's, or every tenant's for a
    /// provider caller naming none) for which `keep` holds.
    pub async fn list_workloads(
        &self,
        call: Call<'_>,
        tenant: &str,
        keep: impl Fn(&Workload) -> bool,
        page: &PageRequest,
    ) -> Result<WorkloadPage, ApiError> {
        let tenant = tenant_filter(call.caller(), tenant, "tenant")?;
        let parent = tenant.as_ref().map(|t| t as &(dyn TableKeyDyn + Sync));
        let (workloads, next_page_token) = pages::page(
            &self.tables.workloads(),
            parent,
            page,
            self.config.max_page_size,
            keep,
        )
        .await?;
        let mut placements = Vec::new();
        for w in &workloads {
            if let Some(p) = self.placement_of(w).await? {
                placements.push(p);
            }
        }
        Ok(WorkloadPage {
            workloads,
            placements,
            next_page_token,
        })
    }

    /// Cancels a live workload (the lifecycle frees its capacity), or removes a finished one.
    pub async fn delete_workload(&self, call: Call<'_>, id: &str) -> Result<Workload, ApiError> {
        let result = async {
            let (workload, revision) = self.find_workload(call.caller(), id).await?;
            if workload.state.is_terminal() {
                // Already over: remove the record and its index entry.
                return match self
                    .tables
                    .workloads()
                    .delete(&(&workload.tenant, &workload.id), Some(revision))
                    .await
                {
                    Ok(_) => Ok(workload),
                    Err(TableError::Conflict { .. } | TableError::NotFound { .. }) => {
                        Err(ApiError::Conflict(format!("workload {}", workload.id)))
                    }
                    Err(e) => Err(e.into()),
                };
            }
            let mut next = workload.clone();
            next.state = ReservationState::Canceled;
            self.tables.workloads().update(&next, revision).await?;
            self.lifecycle.wake();
            Ok(next)
        }
        .await;
        call.finish(&format!("workload/{id}"), result).await
    }

    /// Where `spec` would go for `tenant` now, and why; nothing is stored.
    pub async fn dry_run(
        &self,
        call: Call<'_>,
        tenant: &str,
        spec: WorkloadSpec,
    ) -> Result<Decision, ApiError> {
        let caller = call.caller();
        let tenant_id = acting_tenant(caller, tenant, "tenant")?;
        let tenant = self.tenant_record(&tenant_id).await?;
        let spec = self.checked_spec(caller, &tenant, spec).await?;
        let request_id = WorkloadId::parse("dry-run").expect("valid id");
        self.lifecycle
            .dry_run(
                &PlacementRequest {
                    workload: request_id,
                    tenant: tenant_id,
                    spec,
                },
                self.clock.now(),
            )
            .map_err(|e| match e {
                DryRunError::NotReady => ApiError::FailedPrecondition(e.to_string()),
                DryRunError::Placement(p) => ApiError::invalid("spec", p.to_string()),
            })
    }

    /// The workload's state and placement now and after every change, until it is over (its
    /// terminal state sent), deleted, or the stream is dropped. Counts against the caller's
    /// tenant's concurrent watches.
    pub async fn watch_workload(
        self: &Arc<Self>,
        call: Call<'_>,
        id: &str,
    ) -> Result<impl Stream<Item = Result<WorkloadUpdate, ApiError>> + use<>, ApiError> {
        let caller = call.caller();
        let (workload, _) = self.find_workload(caller, id).await?;
        let slot = self.open_watch(caller.rate_key())?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let services = Arc::clone(self);
        tokio::spawn(async move {
            let _slot = slot;
            watch_loop(services, workload, tx).await;
        });
        Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
    }

    pub(super) async fn placement_of(&self, w: &Workload) -> Result<Option<Placement>, ApiError> {
        Ok(self
            .tables
            .placements()
            .get(&(&w.tenant, &w.id))
            .await?
            .map(|v| v.record))
    }
}

/// Sends the workload's state and placement now and after every change, until it is over
/// (its terminal state sent), deleted, or the receiver goes away.
async fn watch_loop(
    services: Arc<Services>,
    workload: Workload,
    tx: tokio::sync::mpsc::Sender<Result<WorkloadUpdate, ApiError>>,
) {
    let store = Arc::clone(services.tables.store());
    let wkey = Table::<Workload>::store_key(&workload.key_path());
    let pkey = Table::<Placement>::store_key(&workload.key_path());
    let from = meridian_store::Revision(store.revision().0 + 1);
    let watches = (
        store.watch(&wkey, from).await,
        store.watch(&pkey, from).await,
    );
    let (mut wwatch, mut pwatch) = match watches {
        (Ok(w), Ok(p)) => (w, p),
        (Err(e), _) | (_, Err(e)) => {
            let _ = tx.send(Err(e.into())).await;
            return;
        }
    };
    let mut last: Option<(&'static str, bool)> = None;
    loop {
        let current = services
            .tables
            .workloads()
            .get(&(&workload.tenant, &workload.id))
            .await;
        let Ok(Some(current)) = current else {
            let _ = tx
                .send(Err(ApiError::not_found("workload", &workload.id)))
                .await;
            return;
        };
        let placement = services.placement_of(&current.record).await.ok().flatten();
        let key = (current.record.state.name(), placement.is_some());
        let terminal = current.record.state.is_terminal();
        if last != Some(key) {
            last = Some(key);
            let message = match &current.record.state {
                ReservationState::Failed { reason } => format!("failed: {reason}"),
                s => s.name().to_owned(),
            };
            let update = WorkloadUpdate {
                at: services.clock.now(),
                workload: current.record,
                placement,
                message,
            };
            if tx.send(Ok(update)).await.is_err() {
                return;
            }
        }
        if terminal {
            return;
        }
        // Wait for a change of either key (the prefix also matches longer IDs: re-read).
        tokio::select! {
            _ = tx.closed() => return,
            e = wwatch.next() => if e.is_err() { return },
            e = pwatch.next() => if e.is_err() { return },
        }
    }
}
