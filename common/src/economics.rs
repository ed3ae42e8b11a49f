//! Tokenomics: what a million tokens costs a provider, and the same model solved the other
//! way (how many GPUs a token demand needs, whether a fleet is over- or under-provisioned,
//! and the utilisation at which owning GPUs beats a cloud API's price).
//!
//! The model is algebraic (docs/economics.md works an example by hand):
//!
//! - yearly cost per GPU = capex x (1 + redundancy) / amortisation years + maintenance per
//!   year + power (kW) x hours per year x price per kWh x PUE (cooling is PUE - 1 of power);
//! - tokens per year per GPU = tokens/s at full load x seconds per year x utilisation;
//! - cost per million tokens = yearly cost / tokens per year x 10^6.
//!
//! A year is 365.25 days. Money is in the provider's currency, as plain numbers.

use std::collections::BTreeMap;

use meridian_proto::v1 as proto;

use crate::gpu::GpuModel;
use crate::validate::Problem;
use crate::wire::{ConvertError, ConvertProblem};

/// Below this utilisation a fleet serving a demand is over-provisioned.
pub const PROVISIONING_FLOOR: f64 = 0.5;
/// Above this one it is under-provisioned.
pub const PROVISIONING_CEILING: f64 = 0.85;

/// Seconds in a (Julian) year.
pub const SECONDS_PER_YEAR: f64 = 365.25 * 86_400.0;
/// Hours in a (Julian) year.
pub const HOURS_PER_YEAR: f64 = 365.25 * 24.0;

/// What one GPU costs the provider (provider inputs).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuCosts {
    /// Purchase price per GPU, its share of server, network and facility included.
    pub capex: f64,
    /// Years the purchase is written off over.
    pub amortisation_years: f64,
    /// Spare capacity bought for redundancy, as a fraction of the GPUs in service (0.1: one
    /// spare per ten).
    pub redundancy: f64,
    /// Maintenance and support per GPU and year.
    pub maintenance_per_year: f64,
    /// Power drawn per GPU at load, its server's share included, kW.
    pub power_kw: f64,
    /// Electricity price per kWh.
    pub price_per_kwh: f64,
    /// Power usage effectiveness: facility power over IT power (1.4: cooling and losses add
    /// 40 %).
    pub pue: f64,
}

/// How fast one GPU produces tokens for one model (provider input, measured or published).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Throughput {
    /// Tokens per second per GPU at full load.
    pub tokens_per_second: f64,
}

/// The yearly cost of one GPU in its parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YearlyCost {
    pub amortisation: f64,
    pub maintenance: f64,
    /// Power and cooling.
    pub energy: f64,
}

impl YearlyCost {
    /// The sum.
    pub fn total(&self) -> f64 {
        self.amortisation + self.maintenance + self.energy
    }
}

fn positive(problems: &mut Vec<Problem>, field: &str, v: f64) {
    if !(v.is_finite() && v > 0.0) {
        problems.push(Problem::new(field, "must be a number above 0"));
    }
}

fn non_negative(problems: &mut Vec<Problem>, field: &str, v: f64) {
    if !(v.is_finite() && v >= 0.0) {
        problems.push(Problem::new(field, "must be a number of 0 or more"));
    }
}

/// Checks a utilisation: above 0, at most 1.
pub fn check_utilisation(field: &str, u: f64) -> Result<(), Problem> {
    if u.is_finite() && u > 0.0 && u <= 1.0 {
        Ok(())
    } else {
        Err(Problem::new(
            field,
            "must be above 0 and at most 1 (a fraction: 0.8 is 80 %)",
        ))
    }
}

impl GpuCosts {
    /// Every problem of the inputs, each naming its field.
    pub fn check(&self) -> Result<(), Vec<Problem>> {
        let mut p = Vec::new();
        non_negative(&mut p, "capex", self.capex);
        positive(&mut p, "amortisation_years", self.amortisation_years);
        non_negative(&mut p, "redundancy", self.redundancy);
        non_negative(&mut p, "maintenance_per_year", self.maintenance_per_year);
        non_negative(&mut p, "power_kw", self.power_kw);
        non_negative(&mut p, "price_per_kwh", self.price_per_kwh);
        if !(self.pue.is_finite() && self.pue >= 1.0) {
            p.push(Problem::new(
                "pue",
                "must be 1 or more (facility power over IT power)",
            ));
        }
        if p.is_empty() { Ok(()) } else { Err(p) }
    }

    /// The yearly cost of one GPU in service.
    pub fn yearly(&self) -> YearlyCost {
        YearlyCost {
            amortisation: self.capex * (1.0 + self.redundancy) / self.amortisation_years,
            maintenance: self.maintenance_per_year,
            energy: self.power_kw * HOURS_PER_YEAR * self.price_per_kwh * self.pue,
        }
    }
}

impl Throughput {
    /// The problem of the input, naming its field.
    pub fn check(&self) -> Result<(), Problem> {
        if self.tokens_per_second.is_finite() && self.tokens_per_second > 0.0 {
            Ok(())
        } else {
            Err(Problem::new(
                "tokens_per_second",
                "must be a number above 0",
            ))
        }
    }
}

/// The cost of a million tokens on GPUs costing `costs`, producing `throughput` at full load,
/// busy `utilisation` (0 < u <= 1) of the time.
pub fn cost_per_million_tokens(costs: &GpuCosts, throughput: &Throughput, utilisation: f64) -> f64 {
    let tokens_per_year = throughput.tokens_per_second * SECONDS_PER_YEAR * utilisation;
    costs.yearly().total() / tokens_per_year * 1e6
}

/// The utilisation at which a million tokens costs `api_price`: above it owning the GPUs is
/// cheaper. Above 1: the API is cheaper even with the GPUs always busy.
pub fn break_even_utilisation(costs: &GpuCosts, throughput: &Throughput, api_price: f64) -> f64 {
    cost_per_million_tokens(costs, throughput, 1.0) / api_price
}

/// How a fleet compares with a demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioning {
    /// Busier than the ceiling: requests queue, latency grows.
    Under,
    /// Within the band.
    Right,
    /// Idler than the floor: GPUs paid for and idle.
    Over,
}

/// The fleet a token demand needs, and how a given fleet and budget compare.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sizing {
    /// GPUs needed to serve the demand at the target utilisation.
    pub gpus_needed: u64,
    /// Their yearly cost.
    pub cost_needed: f64,
    /// GPUs the budget pays for.
    pub gpus_affordable: u64,
    /// The utilisation the given fleet would run at (may exceed 1: it cannot keep up).
    pub fleet_utilisation: f64,
    /// The given fleet against the band.
    pub provisioning: Provisioning,
}

/// What a sizing asks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    /// Tokens per second, averaged over the year.
    pub tokens_per_second: f64,
    /// Utilisation to size for.
    pub target_utilisation: f64,
    /// Yearly budget.
    pub budget_per_year: f64,
    /// GPUs in the fleet now.
    pub fleet_gpus: u64,
    /// Below this utilisation the fleet is over-provisioned.
    pub floor: f64,
    /// Above this one it is under-provisioned.
    pub ceiling: f64,
}

/// Solves the model for GPUs: how many `demand` needs, how many its budget buys, and how the
/// fleet it names compares.
pub fn size(costs: &GpuCosts, throughput: &Throughput, demand: &Demand) -> Sizing {
    let yearly = costs.yearly().total();
    let per_gpu = throughput.tokens_per_second * demand.target_utilisation;
    let gpus_needed = (demand.tokens_per_second / per_gpu).ceil().max(0.0) as u64;
    let gpus_affordable = if yearly > 0.0 {
        (demand.budget_per_year / yearly).floor().max(0.0) as u64
    } else {
        u64::MAX
    };
    let fleet_utilisation = if demand.fleet_gpus == 0 {
        f64::INFINITY
    } else {
        demand.tokens_per_second / (demand.fleet_gpus as f64 * throughput.tokens_per_second)
    };
    let provisioning = if fleet_utilisation > demand.ceiling {
        Provisioning::Under
    } else if fleet_utilisation < demand.floor {
        Provisioning::Over
    } else {
        Provisioning::Right
    };
    Sizing {
        gpus_needed,
        cost_needed: gpus_needed as f64 * yearly,
        gpus_affordable,
        fleet_utilisation,
        provisioning,
    }
}

/// Cost per million tokens at `points` utilisations evenly spread over (0, 1].
pub fn curve(costs: &GpuCosts, throughput: &Throughput, points: usize) -> Vec<(f64, f64)> {
    (1..=points.max(1))
        .map(|i| {
            let u = i as f64 / points.max(1) as f64;
            (u, cost_per_million_tokens(costs, throughput, u))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The provider's inputs, as central stores them and the cost API and CLI take them.

/// How fast one GPU of a model serves one model size (provider input).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelThroughput {
    /// The GPU model.
    pub gpu_model: GpuModel,
    /// The served model's size, as the provider names it (`8b`, `70b`).
    pub model_size: String,
    /// Tokens per second per GPU at full load.
    pub tokens_per_second: f64,
}

/// The utilisation assumed where nothing is measured, when the inputs do not say.
pub const DEFAULT_ASSUMED_UTILISATION: f64 = 0.5;

fn default_assumed_utilisation() -> f64 {
    DEFAULT_ASSUMED_UTILISATION
}

/// The provider's cost inputs: yearly costs per GPU model, tokens/s per GPU model and model
/// size, and cloud API prices per model size (optional). `meridian cost inputs set FILE`
/// takes them as YAML or TOML:
///
/// ```yaml
/// gpus:
///   H100-80GB: {capex: 30000, amortisation_years: 4, redundancy: 0.1,
///               maintenance_per_year: 1500, power_kw: 1.0, price_per_kwh: 0.10, pue: 1.4}
/// throughput:
///   - {gpu_model: H100-80GB, model_size: 70b, tokens_per_second: 3000}
/// api_prices: {70b: 0.50}
/// assumed_utilisation: 0.5
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostInputs {
    /// Yearly cost inputs per GPU model.
    pub gpus: BTreeMap<GpuModel, GpuCosts>,
    /// Tokens/s per GPU model and model size.
    #[serde(default)]
    pub throughput: Vec<ModelThroughput>,
    /// A cloud API's price per million tokens, per model size.
    #[serde(default)]
    pub api_prices: BTreeMap<String, f64>,
    /// Utilisation assumed where nothing is measured (a fraction).
    #[serde(default = "default_assumed_utilisation")]
    pub assumed_utilisation: f64,
}

/// Whether a model size name is acceptable: 1 to 32 of `a-z`, `0-9`, `.`, `-`, `_`.
fn check_model_size(problems: &mut Vec<Problem>, field: &str, size: &str) {
    let ok = !size.is_empty()
        && size.len() <= 32
        && size
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !ok {
        problems.push(Problem::new(
            field,
            "must be 1 to 32 of a-z, 0-9, '.', '-' and '_' (`8b`, `70b`)",
        ));
    }
}

impl CostInputs {
    /// Every problem of the inputs, each naming its field (`gpus.H100-80GB.pue`,
    /// `throughput[1].tokens_per_second`, `api_prices.70b`).
    pub fn check(&self) -> Result<(), Vec<Problem>> {
        let mut p = Vec::new();
        for (model, costs) in &self.gpus {
            if let Err(problems) = costs.check() {
                p.extend(problems.into_iter().map(|x| {
                    Problem::new(format!("gpus.{}.{}", model.as_str(), x.field), x.message)
                }));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, t) in self.throughput.iter().enumerate() {
            let at = |f: &str| format!("throughput[{i}].{f}");
            check_model_size(&mut p, &at("model_size"), &t.model_size);
            if !self.gpus.contains_key(&t.gpu_model) {
                p.push(Problem::new(
                    at("gpu_model"),
                    format!("{} has no costs under gpus", t.gpu_model.as_str()),
                ));
            }
            if !seen.insert((t.gpu_model, t.model_size.as_str())) {
                p.push(Problem::new(
                    at("model_size"),
                    format!(
                        "{} on {} is listed twice",
                        t.model_size,
                        t.gpu_model.as_str()
                    ),
                ));
            }
            let tp = Throughput {
                tokens_per_second: t.tokens_per_second,
            };
            if let Err(x) = tp.check() {
                p.push(Problem::new(at(&x.field), x.message));
            }
        }
        for (size, price) in &self.api_prices {
            let field = format!("api_prices.{size}");
            check_model_size(&mut p, &field, size);
            if !(price.is_finite() && *price > 0.0) {
                p.push(Problem::new(field, "must be a price above 0"));
            }
        }
        if let Err(x) = check_utilisation("assumed_utilisation", self.assumed_utilisation) {
            p.push(x);
        }
        if p.is_empty() { Ok(()) } else { Err(p) }
    }

    /// The costs of a GPU model.
    pub fn costs(&self, model: GpuModel) -> Option<&GpuCosts> {
        self.gpus.get(&model)
    }

    /// Tokens/s of `model_size` on a GPU of `model`.
    pub fn throughput(&self, model: GpuModel, model_size: &str) -> Option<Throughput> {
        self.throughput
            .iter()
            .find(|t| t.gpu_model == model && t.model_size == model_size)
            .map(|t| Throughput {
                tokens_per_second: t.tokens_per_second,
            })
    }

    /// The model sizes the inputs give a throughput for on `model`.
    pub fn sizes(&self, model: GpuModel) -> Vec<&str> {
        self.throughput
            .iter()
            .filter(|t| t.gpu_model == model)
            .map(|t| t.model_size.as_str())
            .collect()
    }

    /// The cloud API's price per million tokens of `model_size`, if set.
    pub fn api_price(&self, model_size: &str) -> Option<f64> {
        self.api_prices.get(model_size).copied()
    }
}

impl From<GpuCosts> for proto::GpuCostInputs {
    fn from(c: GpuCosts) -> Self {
        Self {
            capex: c.capex,
            amortisation_years: c.amortisation_years,
            redundancy: c.redundancy,
            maintenance_per_year: c.maintenance_per_year,
            power_kw: c.power_kw,
            price_per_kwh: c.price_per_kwh,
            pue: c.pue,
        }
    }
}

impl From<proto::GpuCostInputs> for GpuCosts {
    fn from(c: proto::GpuCostInputs) -> Self {
        Self {
            capex: c.capex,
            amortisation_years: c.amortisation_years,
            redundancy: c.redundancy,
            maintenance_per_year: c.maintenance_per_year,
            power_kw: c.power_kw,
            price_per_kwh: c.price_per_kwh,
            pue: c.pue,
        }
    }
}

impl From<CostInputs> for proto::CostInputs {
    fn from(c: CostInputs) -> Self {
        Self {
            gpus: c
                .gpus
                .into_iter()
                .map(|(model, costs)| proto::GpuModelCosts {
                    gpu_model: model.as_str().to_owned(),
                    costs: Some(costs.into()),
                })
                .collect(),
            throughput: c
                .throughput
                .into_iter()
                .map(|t| proto::ModelThroughput {
                    gpu_model: t.gpu_model.as_str().to_owned(),
                    model_size: t.model_size,
                    tokens_per_second: t.tokens_per_second,
                })
                .collect(),
            api_prices: c
                .api_prices
                .into_iter()
                .map(|(model_size, price_per_million)| proto::ApiPrice {
                    model_size,
                    price_per_million,
                })
                .collect(),
            assumed_utilisation: c.assumed_utilisation,
            updated_at_ms: 0,
            updated_by: String::new(),
        }
    }
}

impl TryFrom<proto::CostInputs> for CostInputs {
    type Error = ConvertError;

    /// The structure only (models known, costs present, nothing twice); the values are
    /// [`CostInputs::check`]'s.
    fn try_from(c: proto::CostInputs) -> Result<Self, ConvertError> {
        let model = |s: &str| {
            GpuModel::parse(s)
                .map_err(|e| ConvertError::new(ConvertProblem::Invalid(e.to_string())))
        };
        let mut gpus = BTreeMap::new();
        for (i, g) in c.gpus.into_iter().enumerate() {
            let m = model(&g.gpu_model).map_err(|e| e.at("gpu_model").at_index("gpus", i))?;
            let costs = g
                .costs
                .ok_or_else(|| ConvertError::new(ConvertProblem::Missing))
                .map_err(|e| e.at("costs").at_index("gpus", i))?;
            if gpus.insert(m, costs.into()).is_some() {
                return Err(ConvertError::new(ConvertProblem::Invalid(format!(
                    "{} is listed twice",
                    m.as_str()
                )))
                .at("gpu_model")
                .at_index("gpus", i));
            }
        }
        let throughput = c
            .throughput
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                Ok(ModelThroughput {
                    gpu_model: model(&t.gpu_model)
                        .map_err(|e| e.at("gpu_model").at_index("throughput", i))?,
                    model_size: t.model_size,
                    tokens_per_second: t.tokens_per_second,
                })
            })
            .collect::<Result<_, ConvertError>>()?;
        let mut api_prices = BTreeMap::new();
        for (i, p) in c.api_prices.into_iter().enumerate() {
            if api_prices
                .insert(p.model_size.clone(), p.price_per_million)
                .is_some()
            {
                return Err(ConvertError::new(ConvertProblem::Invalid(format!(
                    "{} is listed twice",
                    p.model_size
                )))
                .at("model_size")
                .at_index("api_prices", i));
            }
        }
        Ok(Self {
            gpus,
            throughput,
            api_prices,
            assumed_utilisation: c.assumed_utilisation,
        })
    }
}

/// docs/economics.md's worked example: one H100 (30,000 over 4 years, 10 % spares, 1,500 a
/// year of maintenance, 1 kW at 0.10 per kWh, PUE 1.4) making 3,000 tokens per second.
pub fn worked_example() -> (GpuCosts, Throughput) {
    (
        GpuCosts {
            capex: 30_000.0,
            amortisation_years: 4.0,
            redundancy: 0.1,
            maintenance_per_year: 1_500.0,
            power_kw: 1.0,
            price_per_kwh: 0.10,
            pue: 1.4,
        },
        Throughput {
            tokens_per_second: 3_000.0,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::worked_example as h100;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6 * b.abs().max(1.0)
    }

    #[test]
    fn the_worked_example_matches_the_hand_computation() {
        let (c, t) = h100();
        let y = c.yearly();
        assert!(close(y.amortisation, 8_250.0));
        assert!(close(y.maintenance, 1_500.0));
        assert!(close(y.energy, 1_227.24));
        assert!(close(y.total(), 10_977.24));
        // 3,000 tokens/s x 31,557,600 s = 94,672.8 million tokens a year at full load.
        assert!(close(
            cost_per_million_tokens(&c, &t, 1.0),
            10_977.24 / 94_672.8
        ));
        let at80 = cost_per_million_tokens(&c, &t, 0.8);
        let at40 = cost_per_million_tokens(&c, &t, 0.4);
        assert!(close(at80, 0.144_936_560_448));
        assert!(
            close(at40 / at80, 2.0),
            "80 % makes tokens at half the cost of 40 %"
        );
        // Against an API at 0.50 a million tokens: owning wins above 23.19 % busy.
        let u = break_even_utilisation(&c, &t, 0.5);
        assert!(close(u, 0.231_898_496_717));
        assert!(
            close(cost_per_million_tokens(&c, &t, u), 0.5),
            "both directions agree"
        );
    }

    #[test]
    fn sizing_solves_the_other_way() {
        let (c, t) = h100();
        let demand = Demand {
            tokens_per_second: 20_000.0,
            target_utilisation: 0.7,
            budget_per_year: 100_000.0,
            fleet_gpus: 16,
            floor: 0.5,
            ceiling: 0.85,
        };
        let s = size(&c, &t, &demand);
        assert_eq!(s.gpus_needed, 10, "20,000 / (3,000 x 0.7) = 9.52 -> 10");
        assert_eq!(s.gpus_affordable, 9, "100,000 / 10,977.24 = 9.11 -> 9");
        assert!(close(s.fleet_utilisation, 20_000.0 / 48_000.0));
        assert_eq!(s.provisioning, Provisioning::Over);
        let tight = size(
            &c,
            &t,
            &Demand {
                fleet_gpus: 7,
                ..demand
            },
        );
        assert_eq!(
            tight.provisioning,
            Provisioning::Under,
            "{}",
            tight.fleet_utilisation
        );
        let right = size(
            &c,
            &t,
            &Demand {
                fleet_gpus: 10,
                ..demand
            },
        );
        assert_eq!(right.provisioning, Provisioning::Right);
        // Solved back: the needed fleet at its utilisation costs what the forward model says.
        let u = demand.tokens_per_second / (s.gpus_needed as f64 * t.tokens_per_second);
        let tokens = demand.tokens_per_second * SECONDS_PER_YEAR;
        assert!(close(
            s.cost_needed / tokens * 1e6,
            cost_per_million_tokens(&c, &t, u)
        ));
    }

    #[test]
    fn bad_inputs_name_their_fields() {
        let (mut c, _) = h100();
        c.pue = 0.9;
        c.amortisation_years = 0.0;
        c.capex = f64::NAN;
        let fields: Vec<String> = c
            .check()
            .unwrap_err()
            .iter()
            .map(|p| p.field.clone())
            .collect();
        assert_eq!(fields, ["capex", "amortisation_years", "pue"]);
        assert!(
            Throughput {
                tokens_per_second: 0.0
            }
            .check()
            .is_err()
        );
        assert!(check_utilisation("utilisation", 1.5).is_err());
        assert!(check_utilisation("utilisation", 0.0).is_err());
        assert!(check_utilisation("utilisation", 0.3).is_ok());
    }

    fn inputs() -> CostInputs {
        crate::yaml::parse(
            "gpus:\n  H100-80GB: {capex: 30000, amortisation_years: 4, redundancy: 0.1, \
             maintenance_per_year: 1500, power_kw: 1.0, price_per_kwh: 0.10, pue: 1.4}\n\
             throughput:\n  - {gpu_model: H100-80GB, model_size: 70b, tokens_per_second: 3000}\n\
             api_prices: {70b: 0.5}\n",
            &[],
        )
        .unwrap()
    }

    #[test]
    fn provider_inputs_read_check_and_convert() {
        let i = inputs();
        assert_eq!(i.assumed_utilisation, DEFAULT_ASSUMED_UTILISATION);
        i.check().unwrap();
        let (c, t) = h100();
        assert_eq!(i.costs(GpuModel::H100_80GB), Some(&c));
        assert_eq!(i.throughput(GpuModel::H100_80GB, "70b"), Some(t));
        assert_eq!(i.throughput(GpuModel::H100_80GB, "8b"), None);
        assert_eq!(i.sizes(GpuModel::H100_80GB), ["70b"]);
        assert_eq!(i.api_price("70b"), Some(0.5));
        let wire = proto::CostInputs::from(i.clone());
        assert_eq!(CostInputs::try_from(wire.clone()).unwrap(), i);
        let mut twice = wire.clone();
        twice.gpus.push(twice.gpus[0].clone());
        let e = CostInputs::try_from(twice).unwrap_err();
        assert_eq!(e.field, "gpus[1].gpu_model");
        let mut unknown = wire;
        unknown.throughput[0].gpu_model = "H900".into();
        let e = CostInputs::try_from(unknown).unwrap_err();
        assert_eq!(e.field, "throughput[0].gpu_model");
    }

    #[test]
    fn bad_provider_inputs_name_every_field() {
        let mut i = inputs();
        i.gpus.get_mut(&GpuModel::H100_80GB).unwrap().pue = 0.5;
        i.throughput.push(ModelThroughput {
            gpu_model: GpuModel::L40S,
            model_size: "70B".into(),
            tokens_per_second: -1.0,
        });
        i.throughput.push(i.throughput[0].clone());
        i.api_prices.insert("8b".into(), 0.0);
        i.assumed_utilisation = 1.2;
        let fields: Vec<String> = i
            .check()
            .unwrap_err()
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            [
                "gpus.H100-80GB.pue",
                "throughput[1].model_size",
                "throughput[1].gpu_model",
                "throughput[1].tokens_per_second",
                "throughput[2].model_size",
                "api_prices.8b",
                "assumed_utilisation",
            ]
        );
    }

    #[test]
    fn the_curve_falls_as_utilisation_rises() {
        let (c, t) = h100();
        let points = curve(&c, &t, 20);
        assert_eq!(points.len(), 20);
        assert!(points.windows(2).all(|w| w[0].1 > w[1].1));
        assert!(close(points[19].0, 1.0));
    }
}
