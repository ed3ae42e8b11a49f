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

use crate::validate::Problem;

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

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/economics.md's worked example.
    fn h100() -> (GpuCosts, Throughput) {
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

    #[test]
    fn the_curve_falls_as_utilisation_rises() {
        let (c, t) = h100();
        let points = curve(&c, &t, 20);
        assert_eq!(points.len(), 20);
        assert!(points.windows(2).all(|w| w[0].1 > w[1].1));
        assert!(close(points[19].0, 1.0));
    }
}
