//! `UsageService` over [`Services`](crate::services::Services): metered usage for billing
//! export, and a tenant's totals.

use meridian_proto::v1 as proto;
use meridian_proto::v1::usage_service_server::UsageService;
use tonic::{Request, Response, Status};

use super::{Shared, authenticate};
use crate::metering::PeriodStatus;
use crate::services::Rpc;

/// The service.
#[derive(Debug, Clone)]
pub struct Usage(pub Shared);

fn periods(periods: &[PeriodStatus]) -> Vec<proto::UsagePeriod> {
    periods
        .iter()
        .map(|p| proto::UsagePeriod {
            start_ms: p.start_ms,
            r#final: p.is_final(),
            sites_behind: p.sites_behind.iter().cloned().collect(),
        })
        .collect()
}

#[tonic::async_trait]
impl UsageService for Usage {
    async fn export_usage(
        &self,
        request: Request<proto::ExportUsageRequest>,
    ) -> Result<Response<proto::ExportUsageResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::ExportUsage).await?;
        let r = request.into_inner();
        let export = self.0.usage(call, &r.tenant, r.from_ms, r.to_ms).await?;
        Ok(Response::new(proto::ExportUsageResponse {
            rows: export.rows.iter().map(Into::into).collect(),
            periods: periods(&export.periods),
        }))
    }

    async fn get_usage_totals(
        &self,
        request: Request<proto::GetUsageTotalsRequest>,
    ) -> Result<Response<proto::GetUsageTotalsResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::GetUsageTotals).await?;
        let tenant =
            crate::services::acting_tenant(call.caller(), &request.get_ref().tenant, "tenant")?;
        let r = request.into_inner();
        let export = self
            .0
            .usage(call, tenant.as_str(), r.from_ms, r.to_ms)
            .await?;
        Ok(Response::new(proto::GetUsageTotalsResponse {
            tenant: tenant.to_string(),
            totals: export
                .totals()
                .into_iter()
                .map(|(resource, detail, amount)| proto::UsageTotal {
                    resource: resource.to_proto() as i32,
                    detail,
                    amount,
                })
                .collect(),
            r#final: export.is_final(),
            periods: periods(&export.periods),
        }))
    }
}
