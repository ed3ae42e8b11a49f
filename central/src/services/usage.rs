//! Usage: the metered rows of a range of periods ([`crate::metering`]), for billing export, and
//! one tenant's totals. A tenant's users see their tenant's only (another tenant named is
//! `NotFound`); provider roles see every tenant's.

use meridian_common::ids::Timestamp;

use super::{ApiError, Call, Services, tenant_filter};
use crate::metering::{self, MAX_RANGE_MS, PeriodStatus, Resource, UsageRow};

/// Usage rows of a range and each period's status.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageExport {
    /// The range, widened to whole periods, unix ms.
    pub from_ms: i64,
    pub to_ms: i64,
    pub rows: Vec<UsageRow>,
    pub periods: Vec<PeriodStatus>,
}

impl UsageExport {
    /// Every period of the range is final.
    pub fn is_final(&self) -> bool {
        self.periods.iter().all(PeriodStatus::is_final)
    }

    /// Totals per (resource, detail).
    pub fn totals(&self) -> Vec<(Resource, String, f64)> {
        metering::periods::totals(&self.rows)
    }
}

impl Services {
    /// The usage of `[from, to)` (widened to whole hours, at most 31 days), of `tenant` (empty:
    /// every tenant the caller may see).
    pub async fn usage(
        &self,
        call: Call<'_>,
        tenant: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<UsageExport, ApiError> {
        let tenant = tenant_filter(call.caller(), tenant, "tenant")?;
        if let Some(t) = &tenant {
            self.tenant_record(t).await?;
        }
        if from_ms <= 0 {
            return Err(ApiError::invalid(
                "from_ms",
                "is required: the range's start, unix ms",
            ));
        }
        if to_ms <= from_ms {
            return Err(ApiError::invalid("to_ms", "must be after from_ms"));
        }
        let (from, to) = metering::periods::whole_periods(
            Timestamp::from_millis(from_ms),
            Timestamp::from_millis(to_ms),
        );
        if to - from > MAX_RANGE_MS {
            return Err(ApiError::invalid(
                "to_ms",
                "is more than 31 days after from_ms: export a month at a time",
            ));
        }
        let (rows, periods) = metering::usage(&self.tables, tenant.as_ref(), from, to).await?;
        Ok(UsageExport {
            from_ms: from,
            to_ms: to,
            rows,
            periods,
        })
    }
}
