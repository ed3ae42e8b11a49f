//! `meridian cost ...`: the provider's cost inputs and the cost of a million tokens per
//! inference endpoint, per site, for a demand and against a cloud API (docs/economics.md).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use meridian_common::economics::CostInputs;
use meridian_proto::v1 as proto;
use serde_json::{Value, json};

use super::CliError;
use super::client::Clients;
use super::output::{Format, print, time};

/// Cost commands.
#[derive(Debug, Subcommand)]
pub enum CostCommand {
    /// The provider's cost inputs: GPU costs, throughput per model size, API prices.
    #[command(subcommand)]
    Inputs(InputsCommand),
    /// What a million tokens costs on an inference endpoint, overall and per site, at its
    /// measured utilisation (busy, else allocated, else assumed).
    Endpoint {
        /// The workload ID of the endpoint.
        workload: String,
        /// The model size it serves (default: the inputs' only one for its GPU model).
        #[arg(long, default_value = "")]
        model_size: String,
        /// Hours back the utilisation is measured over (default 24).
        #[arg(long, default_value_t = 0)]
        window_hours: u32,
    },
    /// What a million tokens costs on a site's GPUs, per GPU model.
    Site {
        site: String,
        #[arg(long, default_value = "")]
        model_size: String,
        #[arg(long, default_value_t = 0)]
        window_hours: u32,
    },
    /// How many GPUs a token demand needs, what a budget buys, and how a fleet compares.
    Size {
        /// Tokens per second, averaged over the year.
        #[arg(long)]
        demand_tokens_per_second: f64,
        /// Yearly budget.
        #[arg(long, default_value_t = 0.0)]
        budget_per_year: f64,
        /// The GPU model (`H100-80GB`).
        #[arg(long)]
        model: String,
        /// The model size served (`70b`).
        #[arg(long)]
        model_size: String,
        /// Utilisation to size for (default 0.7).
        #[arg(long)]
        target_utilisation: Option<f64>,
        /// GPUs in the fleet now, to compare (default: the GPUs needed).
        #[arg(long, default_value_t = 0)]
        fleet_gpus: u64,
    },
    /// The utilisation at which owning GPUs beats a cloud API's price.
    BreakEven {
        /// The GPU model (`H100-80GB`).
        #[arg(long)]
        model: String,
        /// The model size served (`70b`).
        #[arg(long)]
        model_size: String,
        /// The API's price per million tokens (default: the inputs' price for the size).
        #[arg(long)]
        api_price: Option<f64>,
    },
}

/// `meridian cost inputs ...`.
#[derive(Debug, Subcommand)]
pub enum InputsCommand {
    /// Replaces the inputs with a YAML file (TOML when it ends in `.toml`; `-`: YAML on
    /// stdin). Every bad field is named.
    Set { file: PathBuf },
    /// Shows the inputs.
    Show,
}

/// Reads cost inputs from YAML or TOML.
fn read_inputs(path: &Path) -> Result<CostInputs, CliError> {
    if path.extension().is_some_and(|e| e == "toml") {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))
    } else {
        super::spec::read(path, &[])
    }
}

fn inputs_json(i: &proto::CostInputs) -> Value {
    let model: Result<CostInputs, _> = CostInputs::try_from(i.clone());
    json!({
        "inputs": model.ok().map(|m| serde_json::to_value(m).unwrap_or(Value::Null)),
        "updated_at": i.updated_at_ms,
        "updated_by": i.updated_by,
    })
}

fn print_inputs(format: Format, i: &proto::CostInputs) {
    if format == Format::Json {
        print(format, &inputs_json(i), &[], &[]);
        return;
    }
    let rows: Vec<Vec<String>> = i
        .gpus
        .iter()
        .map(|g| {
            let c = g.costs.unwrap_or_default();
            let yearly = meridian_common::economics::GpuCosts::from(c)
                .yearly()
                .total();
            vec![
                g.gpu_model.clone(),
                money(c.capex),
                format!("{}", c.amortisation_years),
                format!("{}", c.redundancy),
                money(c.maintenance_per_year),
                format!("{}", c.power_kw),
                format!("{}", c.price_per_kwh),
                format!("{}", c.pue),
                money(yearly),
            ]
        })
        .collect();
    print(
        format,
        &Value::Null,
        &[
            "GPU MODEL",
            "CAPEX",
            "YEARS",
            "REDUNDANCY",
            "MAINTENANCE",
            "KW",
            "PER KWH",
            "PUE",
            "YEARLY",
        ],
        &rows,
    );
    meridian_common::outln!();
    let rows: Vec<Vec<String>> = i
        .throughput
        .iter()
        .map(|t| {
            let price = i
                .api_prices
                .iter()
                .find(|p| p.model_size == t.model_size)
                .map_or("-".to_owned(), |p| format!("{}", p.price_per_million));
            vec![
                t.gpu_model.clone(),
                t.model_size.clone(),
                format!("{}", t.tokens_per_second),
                price,
            ]
        })
        .collect();
    print(
        format,
        &Value::Null,
        &["GPU MODEL", "MODEL SIZE", "TOKENS/S", "API PRICE/1M"],
        &rows,
    );
    meridian_common::outln!(
        "\nassumed utilisation {:.0} % (where nothing is measured); set {} by {}",
        i.assumed_utilisation * 100.0,
        time(i.updated_at_ms),
        if i.updated_by.is_empty() {
            "-"
        } else {
            &i.updated_by
        }
    );
}

fn money(v: f64) -> String {
    format!("{v:.2}")
}

fn pct(v: f64) -> String {
    format!("{:.1} %", v * 100.0)
}

/// A cost per million tokens (`-` when infinite: no tokens).
fn per_million(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "-".to_owned()
    }
}

fn basis_name(b: i32) -> &'static str {
    match proto::UtilisationBasis::try_from(b) {
        Ok(proto::UtilisationBasis::Busy) => "busy",
        Ok(proto::UtilisationBasis::Allocated) => "allocated",
        Ok(proto::UtilisationBasis::Assumed) => "assumed",
        _ => "unknown",
    }
}

/// A finite number as JSON, `null` otherwise (JSON has no infinity).
fn num(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}

fn cost_json(c: &proto::TokenCost) -> Value {
    json!({
        "utilisation": c.utilisation,
        "basis": basis_name(c.basis),
        "busy_utilisation": c.busy_utilisation,
        "allocated_utilisation": c.allocated_utilisation,
        "cost_per_million": num(c.cost_per_million),
        "cost_per_million_at_full": num(c.cost_per_million_at_full),
        "gpus": c.gpus,
        "cost_per_year": c.cost_per_year,
        "tokens_per_second": c.tokens_per_second,
        "api_price_per_million": c.api_price_per_million,
        "break_even_utilisation": c.break_even_utilisation,
    })
}

const COST_HEADERS: [&str; 8] = [
    "WHERE",
    "GPUS",
    "UTILISATION",
    "COST/1M",
    "AT 100%",
    "YEARLY",
    "BREAK-EVEN",
    "API/1M",
];

fn cost_row(what: &str, c: &proto::TokenCost) -> Vec<String> {
    let measured = match (c.busy_utilisation, c.allocated_utilisation) {
        (Some(b), Some(a)) => format!(" [busy {}, allocated {}]", pct(b), pct(a)),
        (Some(b), None) => format!(" [busy {}]", pct(b)),
        (None, Some(a)) => format!(" [allocated {}]", pct(a)),
        (None, None) => String::new(),
    };
    vec![
        what.to_owned(),
        format!("{:.2}", c.gpus),
        format!("{} {}{measured}", pct(c.utilisation), basis_name(c.basis)),
        per_million(c.cost_per_million),
        per_million(c.cost_per_million_at_full),
        money(c.cost_per_year),
        c.break_even_utilisation.map_or("-".to_owned(), |b| {
            if b > 1.0 {
                "API cheaper".to_owned()
            } else {
                pct(b)
            }
        }),
        c.api_price_per_million
            .map_or("-".to_owned(), |p| format!("{p}")),
    ]
}

/// Runs one cost command.
pub async fn cost(c: &mut Clients, format: Format, cmd: CostCommand) -> Result<(), CliError> {
    match cmd {
        CostCommand::Inputs(InputsCommand::Set { file }) => {
            let inputs = read_inputs(&file)?;
            let r = c
                .cost
                .set_cost_inputs(proto::SetCostInputsRequest {
                    inputs: Some(inputs.into()),
                })
                .await?
                .into_inner();
            print_inputs(format, &r.inputs.unwrap_or_default());
        }
        CostCommand::Inputs(InputsCommand::Show) => {
            let r = c
                .cost
                .get_cost_inputs(proto::GetCostInputsRequest {})
                .await?
                .into_inner();
            match r.inputs {
                Some(i) => print_inputs(format, &i),
                None => {
                    return Err(CliError {
                        code: 3,
                        message: "no cost inputs are set: `meridian cost inputs set FILE`".into(),
                    });
                }
            }
        }
        CostCommand::Endpoint {
            workload,
            model_size,
            window_hours,
        } => {
            let r = c
                .cost
                .get_endpoint_cost(proto::GetEndpointCostRequest {
                    workload,
                    model_size,
                    window_hours,
                })
                .await?
                .into_inner();
            let total = r.total.unwrap_or_default();
            let value = json!({
                "workload": r.workload,
                "tenant": r.tenant,
                "gpu_model": r.gpu_model,
                "model_size": r.model_size,
                "window_start": r.window_start_ms,
                "window_end": r.window_end_ms,
                "total": cost_json(&total),
                "sites": r.sites.iter().map(|s| json!({
                    "site": s.site,
                    "cost": cost_json(&s.cost.unwrap_or_default()),
                })).collect::<Vec<_>>(),
            });
            if format == Format::Json {
                print(format, &value, &[], &[]);
                return Ok(());
            }
            meridian_common::outln!(
                "endpoint {} of {}: {} serving {}, measured {} to {}",
                r.workload,
                r.tenant,
                r.gpu_model,
                r.model_size,
                time(r.window_start_ms),
                time(r.window_end_ms)
            );
            let mut rows = vec![cost_row("total", &total)];
            rows.extend(
                r.sites
                    .iter()
                    .map(|s| cost_row(&s.site, &s.cost.unwrap_or_default())),
            );
            print(format, &value, &COST_HEADERS, &rows);
        }
        CostCommand::Site {
            site,
            model_size,
            window_hours,
        } => {
            let r = c
                .cost
                .get_site_cost(proto::GetSiteCostRequest {
                    site,
                    model_size,
                    window_hours,
                })
                .await?
                .into_inner();
            let value = json!({
                "site": r.site,
                "window_start": r.window_start_ms,
                "window_end": r.window_end_ms,
                "models": r.models.iter().map(|m| json!({
                    "gpu_model": m.gpu_model,
                    "model_size": m.model_size,
                    "cost": cost_json(&m.cost.unwrap_or_default()),
                })).collect::<Vec<_>>(),
            });
            if format == Format::Json {
                print(format, &value, &[], &[]);
                return Ok(());
            }
            meridian_common::outln!(
                "site {}, measured {} to {}",
                r.site,
                time(r.window_start_ms),
                time(r.window_end_ms)
            );
            let rows: Vec<Vec<String>> = r
                .models
                .iter()
                .map(|m| {
                    let what = if m.model_size.is_empty() {
                        format!("{} (no model size)", m.gpu_model)
                    } else {
                        format!("{} {}", m.gpu_model, m.model_size)
                    };
                    cost_row(&what, &m.cost.unwrap_or_default())
                })
                .collect();
            print(format, &value, &COST_HEADERS, &rows);
        }
        CostCommand::Size {
            demand_tokens_per_second,
            budget_per_year,
            model,
            model_size,
            target_utilisation,
            fleet_gpus,
        } => {
            let r = c
                .cost
                .size_fleet(proto::SizeFleetRequest {
                    gpu_model: model,
                    model_size,
                    demand_tokens_per_second,
                    budget_per_year,
                    target_utilisation,
                    fleet_gpus,
                })
                .await?
                .into_inner();
            let provisioning = match proto::Provisioning::try_from(r.provisioning) {
                Ok(proto::Provisioning::Over) => "over-provisioned",
                Ok(proto::Provisioning::Under) => "under-provisioned",
                Ok(proto::Provisioning::Right) => "right-sized",
                _ => "unknown",
            };
            let value = json!({
                "gpus_needed": r.gpus_needed,
                "cost_needed_per_year": r.cost_needed_per_year,
                "gpus_affordable": r.gpus_affordable,
                "within_budget": r.within_budget,
                "fleet_gpus": r.fleet_gpus,
                "fleet_utilisation": num(r.fleet_utilisation),
                "provisioning": provisioning,
                "target_utilisation": r.target_utilisation,
                "cost_per_million_at_target": r.cost_per_million_at_target,
            });
            print(
                format,
                &value,
                &[
                    "GPUS NEEDED",
                    "YEARLY",
                    "AFFORDABLE",
                    "WITHIN BUDGET",
                    "FLEET",
                    "FLEET BUSY",
                    "PROVISIONING",
                    "COST/1M AT TARGET",
                ],
                &[vec![
                    r.gpus_needed.to_string(),
                    money(r.cost_needed_per_year),
                    if budget_per_year > 0.0 {
                        r.gpus_affordable.to_string()
                    } else {
                        "-".into()
                    },
                    if r.within_budget { "yes" } else { "no" }.into(),
                    r.fleet_gpus.to_string(),
                    pct(r.fleet_utilisation),
                    provisioning.into(),
                    per_million(r.cost_per_million_at_target),
                ]],
            );
        }
        CostCommand::BreakEven {
            model,
            model_size,
            api_price,
        } => {
            let r = c
                .cost
                .get_break_even(proto::GetBreakEvenRequest {
                    gpu_model: model,
                    model_size,
                    api_price_per_million: api_price,
                })
                .await?
                .into_inner();
            let value = json!({
                "api_price_per_million": r.api_price_per_million,
                "cost_per_million_at_full": r.cost_per_million_at_full,
                "break_even_utilisation": r.break_even_utilisation,
                "yearly_cost_per_gpu": r.yearly_cost_per_gpu,
            });
            print(
                format,
                &value,
                &["API/1M", "COST/1M AT 100%", "BREAK-EVEN", "YEARLY PER GPU"],
                &[vec![
                    format!("{}", r.api_price_per_million),
                    per_million(r.cost_per_million_at_full),
                    if r.break_even_utilisation > 1.0 {
                        "none: the API is cheaper".into()
                    } else {
                        pct(r.break_even_utilisation)
                    },
                    money(r.yearly_cost_per_gpu),
                ]],
            );
        }
    }
    Ok(())
}
