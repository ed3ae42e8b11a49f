//! `CostService` over [`Services`](crate::services::Services): the provider's cost inputs and
//! the cost of a million tokens per endpoint, per site, for a demand and against an API.

use meridian_common::economics::{CostInputs, Provisioning};
use meridian_proto::v1 as proto;
use meridian_proto::v1::cost_service_server::CostService;
use tonic::{Request, Response, Status};

use super::{Shared, authenticate};
use crate::services::cost::{Basis, StoredCostInputs, TokenCost};
use crate::services::{ApiError, Rpc};

/// The service.
#[derive(Debug, Clone)]
pub struct Costs(pub Shared);

fn inputs_out(s: StoredCostInputs) -> proto::CostInputs {
    let mut wire = proto::CostInputs::from(s.inputs);
    wire.updated_at_ms = s.updated_at.as_millis();
    wire.updated_by = s.updated_by;
    wire
}

fn basis(b: Basis) -> proto::UtilisationBasis {
    match b {
        Basis::Busy => proto::UtilisationBasis::Busy,
        Basis::Allocated => proto::UtilisationBasis::Allocated,
        Basis::Assumed => proto::UtilisationBasis::Assumed,
    }
}

fn cost_out(c: TokenCost) -> proto::TokenCost {
    proto::TokenCost {
        utilisation: c.utilisation,
        basis: basis(c.basis) as i32,
        busy_utilisation: c.busy,
        allocated_utilisation: c.allocated,
        cost_per_million: c.cost_per_million,
        cost_per_million_at_full: c.cost_per_million_at_full,
        gpus: c.gpus,
        cost_per_year: c.cost_per_year,
        tokens_per_second: c.tokens_per_second,
        api_price_per_million: c.api_price,
        break_even_utilisation: c.break_even,
    }
}

#[tonic::async_trait]
impl CostService for Costs {
    async fn set_cost_inputs(
        &self,
        request: Request<proto::SetCostInputsRequest>,
    ) -> Result<Response<proto::SetCostInputsResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::SetCostInputs).await?;
        let converted = request
            .into_inner()
            .inputs
            .ok_or_else(|| ApiError::invalid("inputs", "is required"))
            .and_then(|w| CostInputs::try_from(w).map_err(|e| ApiError::convert("inputs", e)));
        let stored = match converted {
            Ok(inputs) => self.0.set_cost_inputs(call, inputs).await?,
            Err(e) => call.refuse("cost/inputs", e).await?,
        };
        Ok(Response::new(proto::SetCostInputsResponse {
            inputs: Some(inputs_out(stored)),
        }))
    }

    async fn get_cost_inputs(
        &self,
        request: Request<proto::GetCostInputsRequest>,
    ) -> Result<Response<proto::GetCostInputsResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::GetCostInputs).await?;
        let stored = self.0.get_cost_inputs(call).await?;
        Ok(Response::new(proto::GetCostInputsResponse {
            inputs: stored.map(inputs_out),
        }))
    }

    async fn get_endpoint_cost(
        &self,
        request: Request<proto::GetEndpointCostRequest>,
    ) -> Result<Response<proto::GetEndpointCostResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::GetEndpointCost).await?;
        let r = request.into_inner();
        let c = self
            .0
            .endpoint_cost(call, &r.workload, &r.model_size, r.window_hours)
            .await?;
        Ok(Response::new(proto::GetEndpointCostResponse {
            workload: c.workload.to_string(),
            tenant: c.tenant.to_string(),
            gpu_model: c.gpu_model.as_str().to_owned(),
            model_size: c.model_size,
            window_start_ms: c.window.0.as_millis(),
            window_end_ms: c.window.1.as_millis(),
            total: Some(cost_out(c.total)),
            sites: c
                .sites
                .into_iter()
                .map(|(site, cost)| proto::SiteTokenCost {
                    site: site.to_string(),
                    cost: Some(cost_out(cost)),
                })
                .collect(),
        }))
    }

    async fn get_site_cost(
        &self,
        request: Request<proto::GetSiteCostRequest>,
    ) -> Result<Response<proto::GetSiteCostResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::GetSiteCost).await?;
        let r = request.into_inner();
        let c = self
            .0
            .site_cost(call, &r.site, &r.model_size, r.window_hours)
            .await?;
        Ok(Response::new(proto::GetSiteCostResponse {
            site: c.site.to_string(),
            window_start_ms: c.window.0.as_millis(),
            window_end_ms: c.window.1.as_millis(),
            models: c
                .models
                .into_iter()
                .map(|(model, size, cost)| proto::GpuModelTokenCost {
                    gpu_model: model.as_str().to_owned(),
                    model_size: size.unwrap_or_default(),
                    cost: Some(cost_out(cost)),
                })
                .collect(),
        }))
    }

    async fn size_fleet(
        &self,
        request: Request<proto::SizeFleetRequest>,
    ) -> Result<Response<proto::SizeFleetResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::SizeFleet).await?;
        let s = self.0.size_fleet(call, request.get_ref()).await?;
        Ok(Response::new(proto::SizeFleetResponse {
            gpus_needed: s.sizing.gpus_needed,
            cost_needed_per_year: s.sizing.cost_needed,
            gpus_affordable: s.sizing.gpus_affordable,
            within_budget: s.within_budget,
            fleet_gpus: s.fleet_gpus,
            fleet_utilisation: s.sizing.fleet_utilisation,
            provisioning: match s.sizing.provisioning {
                Provisioning::Under => proto::Provisioning::Under,
                Provisioning::Right => proto::Provisioning::Right,
                Provisioning::Over => proto::Provisioning::Over,
            } as i32,
            target_utilisation: s.target_utilisation,
            cost_per_million_at_target: s.cost_per_million_at_target,
        }))
    }

    async fn get_break_even(
        &self,
        request: Request<proto::GetBreakEvenRequest>,
    ) -> Result<Response<proto::GetBreakEvenResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::GetBreakEven).await?;
        let r = request.into_inner();
        let b = self
            .0
            .break_even(call, &r.gpu_model, &r.model_size, r.api_price_per_million)
            .await?;
        Ok(Response::new(proto::GetBreakEvenResponse {
            api_price_per_million: b.api_price,
            cost_per_million_at_full: b.cost_per_million_at_full,
            break_even_utilisation: b.utilisation,
            yearly_cost_per_gpu: b.yearly_cost_per_gpu,
        }))
    }
}
