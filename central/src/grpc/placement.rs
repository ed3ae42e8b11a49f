//! `PlacementService` over [`Services`](crate::services::Services): workloads, dry runs,
//! watches.

use std::pin::Pin;

use meridian_common::model::{ReservationState, Workload, WorkloadSpec};
use meridian_plan::placement::Decision;
use meridian_proto::v1 as proto;
use meridian_proto::v1::placement_service_server::PlacementService;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::{Shared, authenticate, enum_filter, page};
use crate::services::{ApiError, Rpc};

/// The service.
#[derive(Debug, Clone)]
pub struct Placements(pub Shared);

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

/// A submitted spec in the model, or the error naming its bad field.
fn spec(wire: Option<proto::WorkloadSpec>) -> Result<WorkloadSpec, ApiError> {
    let wire = wire.ok_or_else(|| ApiError::invalid("spec", "is required"))?;
    WorkloadSpec::try_from(wire).map_err(|e| ApiError::convert("spec", e))
}

fn dry_run_response(decision: Decision, max_near_misses: u32) -> proto::DryRunResponse {
    let rejections = decision
        .rejections()
        .iter()
        .map(|(reason, count)| proto::Rejection {
            reason: proto::RejectReason::from(*reason) as i32,
            count: *count,
        })
        .collect();
    let explanation = decision.explanation().to_owned();
    let max_near = if max_near_misses == 0 {
        3
    } else {
        max_near_misses.min(20)
    } as usize;
    match decision {
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
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::WorkloadEvent, Status>> + Send>>;

#[tonic::async_trait]
impl PlacementService for Placements {
    async fn create_workload(
        &self,
        request: Request<proto::CreateWorkloadRequest>,
    ) -> Result<Response<proto::CreateWorkloadResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::CreateWorkload).await?;
        let r = request.into_inner();
        let workload = match spec(r.spec) {
            Ok(spec) => self.0.create_workload(call, &r.tenant, spec).await?,
            Err(e) => call.refuse("workload", e).await?,
        };
        Ok(Response::new(proto::CreateWorkloadResponse {
            workload: Some(workload.into()),
        }))
    }

    async fn get_workload(
        &self,
        request: Request<proto::GetWorkloadRequest>,
    ) -> Result<Response<proto::GetWorkloadResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::GetWorkload).await?;
        let view = self.0.get_workload(call, &request.get_ref().id).await?;
        Ok(Response::new(proto::GetWorkloadResponse {
            workload: Some(view.workload.into()),
            placement: view.placement.map(Into::into),
            endpoints: view.endpoints.into_iter().map(Into::into).collect(),
        }))
    }

    async fn list_workloads(
        &self,
        request: Request<proto::ListWorkloadsRequest>,
    ) -> Result<Response<proto::ListWorkloadsResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::ListWorkloads).await?;
        let r = request.into_inner();
        let state: Option<proto::ReservationPhase> = enum_filter(
            "state",
            r.state,
            "1 (pending) to 6 (failed), or leave it unset",
        )?;
        let listed = self
            .0
            .list_workloads(
                call,
                &r.tenant,
                |w: &Workload| state.is_none_or(|s| phase(&w.state) == s),
                &page(r.page_token, r.page_size),
            )
            .await?;
        Ok(Response::new(proto::ListWorkloadsResponse {
            workloads: listed.workloads.into_iter().map(Into::into).collect(),
            next_page_token: listed.next_page_token,
            placements: listed.placements.into_iter().map(Into::into).collect(),
        }))
    }

    async fn delete_workload(
        &self,
        request: Request<proto::DeleteWorkloadRequest>,
    ) -> Result<Response<proto::DeleteWorkloadResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::DeleteWorkload).await?;
        let workload = self.0.delete_workload(call, &request.get_ref().id).await?;
        Ok(Response::new(proto::DeleteWorkloadResponse {
            workload: Some(workload.into()),
        }))
    }

    async fn dry_run(
        &self,
        request: Request<proto::DryRunRequest>,
    ) -> Result<Response<proto::DryRunResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::DryRun).await?;
        let r = request.into_inner();
        let decision = self.0.dry_run(call, &r.tenant, spec(r.spec)?).await?;
        Ok(Response::new(dry_run_response(decision, r.max_near_misses)))
    }

    type WatchWorkloadStream = EventStream;

    async fn watch_workload(
        &self,
        request: Request<proto::WatchWorkloadRequest>,
    ) -> Result<Response<Self::WatchWorkloadStream>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::WatchWorkload).await?;
        let updates = self.0.watch_workload(call, &request.get_ref().id).await?;
        let events = updates.map(|u| {
            u.map(|u| proto::WorkloadEvent {
                at: u.at.as_millis(),
                workload: Some(u.workload.into()),
                placement: u.placement.map(Into::into),
                message: u.message,
            })
            .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(events)))
    }
}
