//! `PlacementService`: tenants' workloads, dry runs and watches.

use std::pin::Pin;
use std::sync::Arc;

use meridian_common::ids::{TenantId, Timestamp, WorkloadId};
use meridian_common::model::{Placement, ReservationState, Tenant, Workload, WorkloadSpec};
use meridian_common::validate::validate_workload_spec;
use meridian_proto::v1 as proto;
use meridian_proto::v1::placement_service_server::PlacementService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::access::{Caller, Rpc, Scope};
use super::error::ApiError;
use super::{ApiState, acting_tenant, pages, tenant_filter};
use crate::accounts::fresh_id;
use crate::lifecycle::DryRunError;
use meridian_plan::placement::{Decision, PlacementRequest};
use meridian_store::tables::{Record, Table, TableError};

/// The service.
#[derive(Debug, Clone)]
pub struct Placements(pub Arc<ApiState>);

/// The wire phase of a state (for filters).
pub fn phase(state: &ReservationState) -> proto::ReservationPhase {
    match state {
        ReservationState::Pending => proto::ReservationPhase::Pending,
        ReservationState::Approved => proto::ReservationPhase::Approved,
        ReservationState::Active => proto::ReservationPhase::Active,
        ReservationState::Completed => proto::ReservationPhase::Completed,
        ReservationState::Canceled => proto::ReservationPhase::Canceled,
        ReservationState::Failed { .. } => proto::ReservationPhase::Failed,
    }
}

impl ApiState {
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

    /// The tenant record a call acts for (not found for a tenant that does not exist).
    pub(super) async fn tenant_record(&self, id: &TenantId) -> Result<Tenant, ApiError> {
        Ok(self
            .tables
            .tenants()
            .get(id)
            .await?
            .ok_or_else(|| ApiError::not_found("tenant", id))?
            .record)
    }

    /// Converts, validates and checks a submitted spec for `tenant` on behalf of `caller`.
    async fn checked_spec(
        &self,
        caller: &Caller,
        tenant: &Tenant,
        spec: Option<proto::WorkloadSpec>,
    ) -> Result<WorkloadSpec, ApiError> {
        let spec = spec.ok_or_else(|| ApiError::invalid("spec", "is required"))?;
        let spec = WorkloadSpec::try_from(spec).map_err(|e| ApiError::convert("spec", e))?;
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

    async fn create_workload(
        &self,
        caller: &Caller,
        request: proto::CreateWorkloadRequest,
    ) -> Result<Workload, ApiError> {
        let tenant_id = acting_tenant(caller, &request.tenant, "tenant")?;
        let tenant = self.tenant_record(&tenant_id).await?;
        let spec = self.checked_spec(caller, &tenant, request.spec).await?;
        let workload = Workload {
            id: WorkloadId::parse(&fresh_id("wl"))
                .map_err(|e| ApiError::Internal(e.to_string()))?,
            tenant: tenant_id,
            spec,
            state: ReservationState::Pending,
            created_at: crate::channel::now(),
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

    async fn delete_workload(&self, caller: &Caller, id: &str) -> Result<Workload, ApiError> {
        let (workload, revision) = self.find_workload(caller, id).await?;
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

    async fn dry_run(
        &self,
        caller: &Caller,
        request: proto::DryRunRequest,
    ) -> Result<proto::DryRunResponse, ApiError> {
        let tenant_id = acting_tenant(caller, &request.tenant, "tenant")?;
        let tenant = self.tenant_record(&tenant_id).await?;
        let spec = self.checked_spec(caller, &tenant, request.spec).await?;
        let request_id = WorkloadId::parse("dry-run").expect("valid id");
        let decision = self
            .lifecycle
            .dry_run(
                &PlacementRequest {
                    workload: request_id,
                    tenant: tenant_id,
                    spec,
                },
                crate::channel::now(),
            )
            .map_err(|e| match e {
                DryRunError::NotReady => ApiError::FailedPrecondition(e.to_string()),
                DryRunError::Placement(p) => ApiError::invalid("spec", p.to_string()),
            })?;
        let rejections = decision
            .rejections()
            .iter()
            .map(|(reason, count)| proto::Rejection {
                reason: proto::RejectReason::from(*reason) as i32,
                count: *count,
            })
            .collect();
        let explanation = decision.explanation().to_owned();
        let max_near = if request.max_near_misses == 0 {
            3
        } else {
            request.max_near_misses.min(20)
        } as usize;
        Ok(match decision {
            Decision::Placed(p) => proto::DryRunResponse {
                placement: Some(proto::Placement::from(p)),
                rejections,
                near_misses: Vec::new(),
                explanation,
            },
            Decision::Unplaceable(u) => proto::DryRunResponse {
                placement: None,
                rejections,
                near_misses: u
                    .near_misses
                    .into_iter()
                    .take(max_near)
                    .map(|n| proto::NearMiss {
                        site: n.site.to_string(),
                        reasons: vec![proto::RejectReason::from(n.reason) as i32],
                        detail: n.detail,
                    })
                    .collect(),
                explanation,
            },
        })
    }

    async fn placement_of(&self, w: &Workload) -> Result<Option<Placement>, ApiError> {
        Ok(self
            .tables
            .placements()
            .get(&(&w.tenant, &w.id))
            .await?
            .map(|v| v.record))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::WorkloadEvent, Status>> + Send>>;

#[tonic::async_trait]
impl PlacementService for Placements {
    async fn create_workload(
        &self,
        request: Request<proto::CreateWorkloadRequest>,
    ) -> Result<Response<proto::CreateWorkloadResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::CreateWorkload).await?;
        let result = self.0.create_workload(&caller, request.into_inner()).await;
        let object = result
            .as_ref()
            .map(|w| format!("workload/{}", w.id))
            .unwrap_or_else(|_| "workload".into());
        let workload = self
            .0
            .finish(&caller, Rpc::CreateWorkload, &object, result)
            .await?;
        Ok(Response::new(proto::CreateWorkloadResponse {
            workload: Some(workload.into()),
        }))
    }

    async fn get_workload(
        &self,
        request: Request<proto::GetWorkloadRequest>,
    ) -> Result<Response<proto::GetWorkloadResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::GetWorkload).await?;
        let (workload, _) = self.0.find_workload(&caller, &request.get_ref().id).await?;
        let placement = self.0.placement_of(&workload).await?;
        Ok(Response::new(proto::GetWorkloadResponse {
            workload: Some(workload.into()),
            placement: placement.map(Into::into),
        }))
    }

    async fn list_workloads(
        &self,
        request: Request<proto::ListWorkloadsRequest>,
    ) -> Result<Response<proto::ListWorkloadsResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::ListWorkloads).await?;
        let r = request.into_inner();
        let tenant = tenant_filter(&caller, &r.tenant, "tenant")?;
        let state: Option<proto::ReservationPhase> = super::enum_filter(
            "state",
            r.state,
            "1 (pending) to 6 (failed), or leave it unset",
        )?;
        let parent = tenant
            .as_ref()
            .map(|t| t as &(dyn meridian_store::tables::TableKeyDyn + Sync));
        let (items, next) = pages::page(
            &self.0.tables.workloads(),
            parent,
            &r.page_token,
            r.page_size,
            self.0.config.max_page_size,
            |w: &Workload| state.is_none_or(|s| phase(&w.state) == s),
        )
        .await?;
        let mut placements = Vec::new();
        for w in &items {
            if let Some(p) = self
                .0
                .tables
                .placements()
                .get(&(&w.tenant, &w.id))
                .await
                .map_err(ApiError::from)?
            {
                placements.push(p.record.into());
            }
        }
        Ok(Response::new(proto::ListWorkloadsResponse {
            workloads: items.into_iter().map(Into::into).collect(),
            next_page_token: next,
            placements,
        }))
    }

    async fn delete_workload(
        &self,
        request: Request<proto::DeleteWorkloadRequest>,
    ) -> Result<Response<proto::DeleteWorkloadResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::DeleteWorkload).await?;
        let id = request.into_inner().id;
        let result = self.0.delete_workload(&caller, &id).await;
        let workload = self
            .0
            .finish(
                &caller,
                Rpc::DeleteWorkload,
                &format!("workload/{id}"),
                result,
            )
            .await?;
        Ok(Response::new(proto::DeleteWorkloadResponse {
            workload: Some(workload.into()),
        }))
    }

    async fn dry_run(
        &self,
        request: Request<proto::DryRunRequest>,
    ) -> Result<Response<proto::DryRunResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::DryRun).await?;
        Ok(Response::new(
            self.0.dry_run(&caller, request.into_inner()).await?,
        ))
    }

    type WatchWorkloadStream = EventStream;

    async fn watch_workload(
        &self,
        request: Request<proto::WatchWorkloadRequest>,
    ) -> Result<Response<Self::WatchWorkloadStream>, Status> {
        let caller = self.0.begin(&request, Rpc::WatchWorkload).await?;
        let (workload, _) = self.0.find_workload(&caller, &request.get_ref().id).await?;
        let slot = self.0.open_watch(caller.rate_key())?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let state = Arc::clone(&self.0);
        tokio::spawn(async move {
            let _slot = slot;
            watch_loop(state, workload, tx).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Sends the workload's state and placement now and after every change, until it is over
/// (its terminal state sent), deleted, or the client goes away.
async fn watch_loop(
    state: Arc<ApiState>,
    workload: Workload,
    tx: tokio::sync::mpsc::Sender<Result<proto::WorkloadEvent, Status>>,
) {
    let store = Arc::clone(state.tables.store());
    let wkey = Table::<Workload>::store_key(&workload.key_path());
    let pkey = Table::<Placement>::store_key(&workload.key_path());
    let from = meridian_store::Revision(store.revision().0 + 1);
    let watches = (
        store.watch(&wkey, from).await,
        store.watch(&pkey, from).await,
    );
    let (Ok(mut wwatch), Ok(mut pwatch)) = watches else {
        let _ = tx
            .send(Err(Status::unavailable("cannot watch the store; retry")))
            .await;
        return;
    };
    let mut last: Option<(proto::ReservationPhase, bool)> = None;
    loop {
        let current = state
            .tables
            .workloads()
            .get(&(&workload.tenant, &workload.id))
            .await;
        let Ok(Some(current)) = current else {
            let _ = tx
                .send(Err(Status::not_found(format!(
                    "workload {} not found",
                    workload.id
                ))))
                .await;
            return;
        };
        let placement = state.placement_of(&current.record).await.ok().flatten();
        let key = (phase(&current.record.state), placement.is_some());
        let terminal = current.record.state.is_terminal();
        if last != Some(key) {
            last = Some(key);
            let message = match &current.record.state {
                ReservationState::Failed { reason } => format!("failed: {reason}"),
                s => s.name().to_owned(),
            };
            let event = proto::WorkloadEvent {
                at: Timestamp::as_millis(crate::channel::now()),
                workload: Some(current.record.into()),
                placement: placement.map(Into::into),
                message,
            };
            if tx.send(Ok(event)).await.is_err() {
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
