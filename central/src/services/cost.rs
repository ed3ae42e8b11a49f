//! The cost service: the provider's cost inputs, and what a million tokens costs on an
//! inference endpoint, on a site's GPUs, for a token demand, and against a cloud API's price
//! (`meridian_common::economics`, docs/economics.md).
//!
//! Utilisation: **busy** (NVML's, from the agents' summaries of the GPUs concerned over the
//! window) when measured; else **allocated** (GPU-seconds held by applied allocations over
//! GPU-seconds available in the window: for an endpoint, the share of the window its GPUs were
//! held, so the cost if it were busy whenever it ran); else the inputs' **assumed**
//! utilisation. Every answer says which it used and gives the measured values it had.
//!
//! A tenant's caller may ask about its own endpoints only (another tenant's is not found);
//! sites, sizing, break-even and the inputs are the provider's.

use std::collections::{BTreeMap, BTreeSet};

use meridian_common::economics::{
    self, CostInputs, Demand, GpuCosts, PROVISIONING_CEILING, PROVISIONING_FLOOR, Throughput,
};
use meridian_common::ids::{ServerId, SiteId, Timestamp, WorkloadId};
use meridian_common::model::GpuModel;
use meridian_common::model::{Accelerator, Placement, Workload, WorkloadKind};
use meridian_proto::v1 as proto;
use meridian_store::schema::COST_INPUTS_PATH;
use meridian_store::tables::KeyPath;

use super::error::ApiError;
use super::utilisation::{held_seconds, share};
use super::{Call, Services};
use crate::channel::utilisation::{Busy, holds, site_hours};

/// Window of measurement when a request names none, hours.
pub const DEFAULT_WINDOW_HOURS: u32 = 24;
/// Longest window, hours (31 days).
pub const MAX_WINDOW_HOURS: u32 = 744;
/// Utilisation a sizing aims for when the request names none.
pub const DEFAULT_TARGET_UTILISATION: f64 = 0.7;

/// The inputs as stored, with who set them when.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCostInputs {
    pub inputs: CostInputs,
    pub updated_at: Timestamp,
    pub updated_by: String,
}

/// Which utilisation a cost was computed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// NVML's busy utilisation, measured.
    Busy,
    /// Allocated utilisation, from the placements.
    Allocated,
    /// The inputs' assumption: nothing measured.
    Assumed,
}

impl Basis {
    /// `busy`, `allocated`, `assumed`.
    pub fn name(self) -> &'static str {
        match self {
            Basis::Busy => "busy",
            Basis::Allocated => "allocated",
            Basis::Assumed => "assumed",
        }
    }
}

/// A cost per million tokens at one utilisation.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenCost {
    /// The utilisation used, a fraction.
    pub utilisation: f64,
    pub basis: Basis,
    /// Busy utilisation measured over the window, if any was.
    pub busy: Option<f64>,
    /// Allocated utilisation over the window, if known.
    pub allocated: Option<f64>,
    /// At `utilisation` (infinite when it is 0: no tokens).
    pub cost_per_million: f64,
    /// With the GPUs always busy.
    pub cost_per_million_at_full: f64,
    /// GPUs counted (MIG instances as their share).
    pub gpus: f64,
    /// Their yearly cost.
    pub cost_per_year: f64,
    /// Tokens per second at `utilisation`.
    pub tokens_per_second: f64,
    /// The cloud API's price for the model size, if set.
    pub api_price: Option<f64>,
    /// The utilisation above which owning beats the API.
    pub break_even: Option<f64>,
}

/// What a million tokens costs on one inference endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointCost {
    pub workload: WorkloadId,
    pub tenant: meridian_common::ids::TenantId,
    pub gpu_model: GpuModel,
    pub model_size: String,
    pub window: (Timestamp, Timestamp),
    /// Over every replica.
    pub total: TokenCost,
    /// Per site of its replicas.
    pub sites: Vec<(SiteId, TokenCost)>,
}

/// What a million tokens costs on one site's GPUs, per GPU model.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteCost {
    pub site: SiteId,
    pub window: (Timestamp, Timestamp),
    /// (model, the size costed (`None`: no throughput for the model), cost).
    pub models: Vec<(GpuModel, Option<String>, TokenCost)>,
}

/// A sizing's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSizing {
    pub sizing: economics::Sizing,
    pub fleet_gpus: u64,
    pub within_budget: bool,
    pub target_utilisation: f64,
    pub cost_per_million_at_target: f64,
}

/// A break-even's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakEven {
    pub api_price: f64,
    pub cost_per_million_at_full: f64,
    pub utilisation: f64,
    pub yearly_cost_per_gpu: f64,
}

/// The measured utilisations of some GPUs and the one a cost uses.
fn choose(busy: Option<f64>, allocated: Option<f64>, assumed: f64) -> (f64, Basis) {
    match (busy, allocated) {
        (Some(b), _) => (b, Basis::Busy),
        (None, Some(a)) if a > 0.0 => (a, Basis::Allocated),
        _ => (assumed, Basis::Assumed),
    }
}

/// The cost of a million tokens on `gpus` GPUs costing `costs`, serving `throughput`, with
/// the measured utilisations given.
#[allow(clippy::too_many_arguments)]
pub fn token_cost(
    costs: &GpuCosts,
    throughput: &Throughput,
    gpus: f64,
    busy: Option<f64>,
    allocated: Option<f64>,
    assumed: f64,
    api_price: Option<f64>,
) -> TokenCost {
    let (utilisation, basis) = choose(busy, allocated, assumed);
    let cost_per_million = if utilisation > 0.0 {
        economics::cost_per_million_tokens(costs, throughput, utilisation)
    } else {
        f64::INFINITY
    };
    TokenCost {
        utilisation,
        basis,
        busy,
        allocated,
        cost_per_million,
        cost_per_million_at_full: economics::cost_per_million_tokens(costs, throughput, 1.0),
        gpus,
        cost_per_year: gpus * costs.yearly().total(),
        tokens_per_second: gpus * throughput.tokens_per_second * utilisation,
        api_price,
        break_even: api_price.map(|p| economics::break_even_utilisation(costs, throughput, p)),
    }
}

/// The model size to cost `model` at: the one asked for, else the inputs' only one for it.
fn model_size(inputs: &CostInputs, model: GpuModel, asked: &str) -> Result<String, ApiError> {
    let sizes = inputs.sizes(model);
    if !asked.is_empty() {
        if sizes.contains(&asked) {
            return Ok(asked.to_owned());
        }
        return Err(ApiError::invalid(
            "model_size",
            format!(
                "the cost inputs give no throughput for {asked} on {}{}",
                model.as_str(),
                known(&sizes)
            ),
        ));
    }
    match sizes.as_slice() {
        [one] => Ok((*one).to_owned()),
        _ => Err(ApiError::invalid(
            "model_size",
            format!(
                "is required: name the model size served on {}{}",
                model.as_str(),
                known(&sizes)
            ),
        )),
    }
}

fn known(sizes: &[&str]) -> String {
    if sizes.is_empty() {
        " (the inputs have none for it)".to_owned()
    } else {
        format!(" (the inputs have {})", sizes.join(", "))
    }
}

/// The window `[now - hours, now)` of a request (0: the default).
fn window(now: Timestamp, hours: u32) -> Result<(Timestamp, Timestamp), ApiError> {
    let hours = if hours == 0 {
        DEFAULT_WINDOW_HOURS
    } else {
        hours
    };
    if hours > MAX_WINDOW_HOURS {
        return Err(ApiError::invalid(
            "window_hours",
            format!("must be at most {MAX_WINDOW_HOURS} (31 days)"),
        ));
    }
    Ok((
        now.saturating_add_millis(-(i64::from(hours) * 3_600_000)),
        now,
    ))
}

/// An endpoint's GPU model and the share of a GPU one replica's slot holds.
fn endpoint_gpus(w: &Workload) -> Result<(GpuModel, f64), ApiError> {
    match &w.spec.resources.accelerator {
        Accelerator::WholeGpus { model, count } => Ok((*model, f64::from(*count))),
        Accelerator::Mig { model, profile } => Ok((
            *model,
            share(
                &meridian_common::model::GpuSlot::Mig {
                    gpu_index: 0,
                    profile: *profile,
                    placement: 0,
                },
                Some(*model),
            ),
        )),
        Accelerator::None => Err(ApiError::FailedPrecondition(format!(
            "workload {} has no GPUs: no tokens to cost",
            w.id
        ))),
    }
}

impl Services {
    /// The provider's cost inputs, if set.
    pub(crate) async fn stored_cost_inputs(&self) -> Result<Option<StoredCostInputs>, ApiError> {
        let Some(v) = self
            .tables
            .cost_inputs()
            .get(&KeyPath(COST_INPUTS_PATH.to_owned()))
            .await?
        else {
            return Ok(None);
        };
        let r = v.record;
        let (updated_at, updated_by) = (
            Timestamp::from_millis(r.updated_at_ms),
            r.updated_by.clone(),
        );
        let inputs = CostInputs::try_from(r)
            .map_err(|e| ApiError::Internal(format!("the stored cost inputs do not read: {e}")))?;
        Ok(Some(StoredCostInputs {
            inputs,
            updated_at,
            updated_by,
        }))
    }

    async fn required_cost_inputs(&self) -> Result<CostInputs, ApiError> {
        self.stored_cost_inputs()
            .await?
            .map(|s| s.inputs)
            .ok_or_else(|| {
                ApiError::FailedPrecondition(
                    "no cost inputs are set: a provider operator sets them with \
                     `meridian cost inputs set FILE`"
                        .into(),
                )
            })
    }

    /// Replaces the provider's cost inputs after checking every field (each problem names
    /// its field under `inputs.`). Audited.
    pub async fn set_cost_inputs(
        &self,
        call: Call<'_>,
        inputs: CostInputs,
    ) -> Result<StoredCostInputs, ApiError> {
        let result = async {
            inputs.check().map_err(|p| {
                ApiError::validation("inputs", meridian_common::validate::ValidationError(p))
            })?;
            let stored = StoredCostInputs {
                inputs,
                updated_at: self.clock.now(),
                updated_by: call.caller().user.to_string(),
            };
            let mut record = proto::CostInputs::from(stored.inputs.clone());
            record.updated_at_ms = stored.updated_at.as_millis();
            record.updated_by = stored.updated_by.clone();
            self.tables.cost_inputs().upsert(&record).await?;
            Ok(stored)
        }
        .await;
        call.finish("cost/inputs", result).await
    }

    /// The provider's cost inputs (`None` before any were set).
    pub async fn get_cost_inputs(
        &self,
        _call: Call<'_>,
    ) -> Result<Option<StoredCostInputs>, ApiError> {
        self.stored_cost_inputs().await
    }

    /// What a million tokens costs on the inference endpoint `id` serving `size` (empty: the
    /// inputs' only size for its GPU model), measured over the last `hours` hours.
    pub async fn endpoint_cost(
        &self,
        call: Call<'_>,
        id: &str,
        size: &str,
        hours: u32,
    ) -> Result<EndpointCost, ApiError> {
        let (workload, _) = self.find_workload(call.caller(), id).await?;
        let window = window(self.clock.now(), hours)?;
        let inputs = self.required_cost_inputs().await?;
        let placement = self.placement_of(&workload).await?;
        let (_, _, states) = self.allocation_inputs().await?;
        self.cost_of_endpoint(
            &inputs,
            &workload,
            placement.as_ref(),
            size,
            window,
            &states,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn cost_of_endpoint(
        &self,
        inputs: &CostInputs,
        workload: &Workload,
        placement: Option<&Placement>,
        size: &str,
        (from, to): (Timestamp, Timestamp),
        states: &std::collections::HashMap<WorkloadId, meridian_common::model::ReservationState>,
    ) -> Result<EndpointCost, ApiError> {
        if workload.spec.kind != WorkloadKind::InferenceEndpoint {
            return Err(ApiError::FailedPrecondition(format!(
                "workload {} is a {}, not an inference endpoint",
                workload.id,
                kind_name(workload.spec.kind)
            )));
        }
        let (model, per_replica) = endpoint_gpus(workload)?;
        let placement = placement.ok_or_else(|| {
            ApiError::FailedPrecondition(format!(
                "workload {} is not placed yet: nothing to measure",
                workload.id
            ))
        })?;
        let costs = *inputs.costs(model).ok_or_else(|| {
            ApiError::FailedPrecondition(format!(
                "the cost inputs have no costs for {}",
                model.as_str()
            ))
        })?;
        let size = model_size(inputs, model, size)?;
        let throughput = inputs
            .throughput(model, &size)
            .expect("model_size checked it");
        let api_price = inputs.api_price(&size);
        let state = states.get(&workload.id);
        let seconds = (to.as_millis() - from.as_millis()).max(1) as f64 / 1000.0;
        // Per site: its replicas' GPUs, their busy and allocated utilisation.
        let mut by_site: BTreeMap<SiteId, (f64, BTreeSet<(ServerId, u32)>)> = BTreeMap::new();
        for a in &placement.assignments {
            let e = by_site.entry(a.site.clone()).or_default();
            e.0 += per_replica;
            e.1.extend(
                a.slot
                    .gpu_indices()
                    .into_iter()
                    .map(|i| (a.server.clone(), i)),
            );
        }
        let mut sites = Vec::new();
        let (mut all_busy, mut all_held, mut all_gpus) = (Busy::default(), 0.0, 0.0);
        for (site, (gpus, held)) in by_site {
            let mut busy = Busy::default();
            for r in site_hours(&self.tables, &site, from, to).await? {
                busy.add(&r, |server, gpu| holds(&held, server, gpu));
            }
            let held_s = match state {
                Some(state) => {
                    let mine = std::slice::from_ref(placement);
                    let one =
                        std::collections::HashMap::from([(workload.id.clone(), state.clone())]);
                    // Every GPU of the replica counts as available to it: it holds them.
                    let mut avail = super::utilisation::Available::default();
                    for (server, i) in &held {
                        avail.gpus.insert((site.clone(), server.clone(), *i), model);
                    }
                    held_seconds(mine, &one, &avail, &|k| k.0 == site, from, to)
                }
                None => 0.0,
            };
            let allocated = (gpus > 0.0).then(|| (held_s / (gpus * seconds)).clamp(0.0, 1.0));
            all_busy.measured_seconds += busy.measured_seconds;
            all_busy.busy_seconds += busy.busy_seconds;
            all_held += held_s;
            all_gpus += gpus;
            sites.push((
                site,
                token_cost(
                    &costs,
                    &throughput,
                    gpus,
                    busy.utilisation(),
                    allocated,
                    inputs.assumed_utilisation,
                    api_price,
                ),
            ));
        }
        let allocated = (all_gpus > 0.0).then(|| (all_held / (all_gpus * seconds)).clamp(0.0, 1.0));
        let total = token_cost(
            &costs,
            &throughput,
            all_gpus,
            all_busy.utilisation(),
            allocated,
            inputs.assumed_utilisation,
            api_price,
        );
        Ok(EndpointCost {
            workload: workload.id.clone(),
            tenant: workload.tenant.clone(),
            gpu_model: model,
            model_size: size,
            window: (from, to),
            total,
            sites,
        })
    }

    /// The cost of every inference endpoint the caller sees, over the last `hours` hours (for
    /// the console): each endpoint with its cost or why it has none.
    pub async fn endpoint_costs(
        &self,
        call: Call<'_>,
        hours: u32,
    ) -> Result<Vec<(Workload, Result<EndpointCost, ApiError>)>, ApiError> {
        let scope = call.caller().scope();
        let window = window(self.clock.now(), hours)?;
        let inputs = self.stored_cost_inputs().await?.map(|s| s.inputs);
        let (_, placements, states) = self.allocation_inputs().await?;
        let workloads: Vec<Workload> = self.tables.workloads().list_all(None, 5000).await?;
        let mut out = Vec::new();
        for w in workloads {
            if w.spec.kind != WorkloadKind::InferenceEndpoint
                || !scope.sees(&w.tenant)
                || w.state.is_terminal()
            {
                continue;
            }
            let placement = placements
                .iter()
                .find(|p| p.workload == w.id && p.tenant == w.tenant);
            let cost = match &inputs {
                None => Err(ApiError::FailedPrecondition(
                    "no cost inputs are set".into(),
                )),
                Some(inputs) => {
                    self.cost_of_endpoint(inputs, &w, placement, "", window, &states)
                        .await
                }
            };
            out.push((w, cost));
        }
        Ok(out)
    }

    /// What a million tokens costs on `site`'s available GPUs, per GPU model, measured over
    /// the last `hours` hours.
    pub async fn site_cost(
        &self,
        _call: Call<'_>,
        site: &str,
        size: &str,
        hours: u32,
    ) -> Result<SiteCost, ApiError> {
        let site = SiteId::parse(site).map_err(|e| ApiError::invalid("site", e.to_string()))?;
        if self.tables.sites().get(&site).await?.is_none() {
            return Err(ApiError::not_found("site", &site));
        }
        let (from, to) = window(self.clock.now(), hours)?;
        let inputs = self.required_cost_inputs().await?;
        let (available, placements, states) = self.allocation_inputs().await?;
        let records = site_hours(&self.tables, &site, from, to).await?;
        let seconds = (to.as_millis() - from.as_millis()).max(1) as f64 / 1000.0;
        let mut models: BTreeMap<GpuModel, BTreeSet<(ServerId, u32)>> = BTreeMap::new();
        for ((_, server, i), model) in available.at(Some(&site)) {
            models
                .entry(*model)
                .or_default()
                .insert((server.clone(), *i));
        }
        let mut out = Vec::new();
        for (model, gpus) in models {
            let Some(costs) = inputs.costs(model).copied() else {
                continue;
            };
            let mut busy = Busy::default();
            for r in &records {
                busy.add(r, |server, gpu| holds(&gpus, server, gpu));
            }
            let held = held_seconds(
                &placements,
                &states,
                &available,
                &|k| k.0 == site && gpus.contains(&(k.1.clone(), k.2)),
                from,
                to,
            );
            let n = gpus.len() as f64;
            let allocated = Some((held / (n * seconds)).clamp(0.0, 1.0));
            let chosen = if size.is_empty() {
                match inputs.sizes(model).as_slice() {
                    [one] => Some((*one).to_owned()),
                    _ => None,
                }
            } else {
                inputs.sizes(model).contains(&size).then(|| size.to_owned())
            };
            let (throughput, api_price) = match &chosen {
                Some(s) => (
                    inputs.throughput(model, s).expect("a size of the model"),
                    inputs.api_price(s),
                ),
                None => (
                    Throughput {
                        tokens_per_second: f64::NAN,
                    },
                    None,
                ),
            };
            let mut cost = token_cost(
                &costs,
                &throughput,
                n,
                busy.utilisation(),
                allocated,
                inputs.assumed_utilisation,
                api_price,
            );
            if chosen.is_none() {
                cost.cost_per_million = 0.0;
                cost.cost_per_million_at_full = 0.0;
                cost.tokens_per_second = 0.0;
            }
            out.push((model, chosen, cost));
        }
        Ok(SiteCost {
            site,
            window: (from, to),
            models: out,
        })
    }

    /// The GPUs of `model` serving `size` that a demand of `tokens_per_second` needs at
    /// `target` utilisation, what `budget` buys, and how `fleet_gpus` (0: the GPUs needed)
    /// compare.
    pub async fn size_fleet(
        &self,
        _call: Call<'_>,
        request: &proto::SizeFleetRequest,
    ) -> Result<FleetSizing, ApiError> {
        let model = GpuModel::parse(&request.gpu_model)
            .map_err(|e| ApiError::invalid("gpu_model", e.to_string()))?;
        let demand = request.demand_tokens_per_second;
        if !(demand.is_finite() && demand > 0.0) {
            return Err(ApiError::invalid(
                "demand_tokens_per_second",
                "must be a number above 0",
            ));
        }
        let budget = request.budget_per_year;
        if !(budget.is_finite() && budget >= 0.0) {
            return Err(ApiError::invalid(
                "budget_per_year",
                "must be a number of 0 or more (0: none)",
            ));
        }
        let target = request
            .target_utilisation
            .unwrap_or(DEFAULT_TARGET_UTILISATION);
        economics::check_utilisation("target_utilisation", target)
            .map_err(|p| ApiError::Invalid(vec![p]))?;
        let inputs = self.required_cost_inputs().await?;
        let (costs, throughput) = priced(&inputs, model, &request.model_size)?;
        let needed = economics::size(
            &costs,
            &throughput,
            &Demand {
                tokens_per_second: demand,
                target_utilisation: target,
                budget_per_year: budget,
                fleet_gpus: 1,
                floor: PROVISIONING_FLOOR,
                ceiling: PROVISIONING_CEILING,
            },
        )
        .gpus_needed;
        let fleet_gpus = if request.fleet_gpus == 0 {
            needed
        } else {
            request.fleet_gpus
        };
        let mut sizing = economics::size(
            &costs,
            &throughput,
            &Demand {
                tokens_per_second: demand,
                target_utilisation: target,
                budget_per_year: budget,
                fleet_gpus,
                floor: PROVISIONING_FLOOR,
                ceiling: PROVISIONING_CEILING,
            },
        );
        if budget == 0.0 {
            sizing.gpus_affordable = 0;
        }
        Ok(FleetSizing {
            within_budget: budget == 0.0 || sizing.cost_needed <= budget,
            fleet_gpus,
            target_utilisation: target,
            cost_per_million_at_target: economics::cost_per_million_tokens(
                &costs,
                &throughput,
                target,
            ),
            sizing,
        })
    }

    /// The utilisation at which `model` serving `size` beats a cloud API at `price` per
    /// million tokens (`None`: the inputs' price for the size).
    pub async fn break_even(
        &self,
        _call: Call<'_>,
        model: &str,
        size: &str,
        price: Option<f64>,
    ) -> Result<BreakEven, ApiError> {
        let model =
            GpuModel::parse(model).map_err(|e| ApiError::invalid("gpu_model", e.to_string()))?;
        if let Some(p) = price
            && !(p.is_finite() && p > 0.0)
        {
            return Err(ApiError::invalid(
                "api_price_per_million",
                "must be a price above 0",
            ));
        }
        let inputs = self.required_cost_inputs().await?;
        let (costs, throughput) = priced(&inputs, model, size)?;
        let api_price = match price.or_else(|| inputs.api_price(size)) {
            Some(p) => p,
            None => {
                return Err(ApiError::invalid(
                    "api_price_per_million",
                    format!("is required: the cost inputs have no API price for {size}"),
                ));
            }
        };
        Ok(BreakEven {
            api_price,
            cost_per_million_at_full: economics::cost_per_million_tokens(&costs, &throughput, 1.0),
            utilisation: economics::break_even_utilisation(&costs, &throughput, api_price),
            yearly_cost_per_gpu: costs.yearly().total(),
        })
    }
}

/// The costs and throughput of `model` serving `size`, or the field that lacks them.
fn priced(
    inputs: &CostInputs,
    model: GpuModel,
    size: &str,
) -> Result<(GpuCosts, Throughput), ApiError> {
    let costs = *inputs.costs(model).ok_or_else(|| {
        ApiError::invalid(
            "gpu_model",
            format!("the cost inputs have no costs for {}", model.as_str()),
        )
    })?;
    let size = model_size(inputs, model, size)?;
    let throughput = inputs
        .throughput(model, &size)
        .expect("model_size checked it");
    Ok((costs, throughput))
}

fn kind_name(kind: WorkloadKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{kind:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use meridian_common::economics::worked_example as h100;

    #[test]
    fn measured_busy_wins_then_allocated_then_the_assumption() {
        let (c, t) = h100();
        let busy = token_cost(&c, &t, 2.0, Some(0.4), Some(1.0), 0.5, Some(0.5));
        assert_eq!(busy.basis, Basis::Busy);
        assert!((busy.cost_per_million - 10_977.24 / 94_672.8 / 0.4).abs() < 1e-9);
        assert!((busy.cost_per_year - 2.0 * 10_977.24).abs() < 1e-6);
        assert!((busy.tokens_per_second - 2_400.0).abs() < 1e-9);
        assert!((busy.break_even.unwrap() - 0.231_898_5).abs() < 1e-6);
        let allocated = token_cost(&c, &t, 1.0, None, Some(0.8), 0.5, None);
        assert_eq!(
            (allocated.basis, allocated.utilisation),
            (Basis::Allocated, 0.8)
        );
        assert_eq!(allocated.break_even, None);
        let assumed = token_cost(&c, &t, 1.0, None, Some(0.0), 0.5, None);
        assert_eq!((assumed.basis, assumed.utilisation), (Basis::Assumed, 0.5));
        let idle = token_cost(&c, &t, 1.0, Some(0.0), None, 0.5, None);
        assert_eq!(idle.basis, Basis::Busy);
        assert!(
            idle.cost_per_million.is_infinite(),
            "an idle endpoint makes no tokens"
        );
    }

    #[test]
    fn windows_are_bounded() {
        let now = Timestamp::from_millis(100 * 3_600_000);
        assert_eq!(
            window(now, 0).unwrap().0,
            Timestamp::from_millis(76 * 3_600_000)
        );
        assert!(window(now, MAX_WINDOW_HOURS + 1).is_err());
    }
}
